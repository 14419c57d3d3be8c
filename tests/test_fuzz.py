"""Nothing a producer sends can crash the loop: hypothesis over every input record type and over raw bytes.

Records are drawn from the Avro schemas themselves (so every field of every type is covered) with
extreme values: NaN, infinity, the int and long extremes, huge and unicode strings, large maps and
arrays, times far in the past and future. Each example runs decode + the Pipeline end to end.
"""
import math
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.dead_letters import DeadLetterPolicy, MemoryDeadLetters
from ingest.decode import RawMessage
from ingest.pipeline import Pipeline
from schemas import INPUT_RECORDS, TOPICS, schema
from schemas.wire import encode_single_object
from tests.helpers import T0, ListSource, raw
from tests.test_pipeline import base, tx

INT64 = (-2**63, 2**63 - 1)
INT32 = (-2**31, 2**31 - 1)
IDS = st.sampled_from(["P1", "X1", "R1", "CB01", "L1", ""]) | st.text(max_size=8)
TIMES = st.sampled_from([T0, T0 + 1000, T0 + 86_400_000 * 3, 4_102_444_800_000, 0, -1, *INT64]) | st.integers(*INT64)
LONGS = st.sampled_from([0, 1, -1, 100, 10**15, 10**15 + 1, *INT64]) | st.integers(*INT64)
INTS = st.sampled_from([0, -1, *INT32]) | st.integers(*INT32)
DOUBLES = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 0.12]) | st.floats()
HUGE_TEXT = st.sampled_from(["款" * 200_000, "x" * 5_000, "\u0000\ud7ff\U0010ffff", "320703", "١٢٣٤٥٦"])
TEXT = st.text(max_size=40) | HUGE_TEXT | IDS


def _value(node: Any, name: str) -> st.SearchStrategy[Any]:
    """A strategy for one Avro type, leaning on the extremes a broken producer sends."""
    if isinstance(node, list):
        return st.one_of(*[_value(n, name) for n in node])
    if isinstance(node, str):
        node = {"type": node}
    t = node["type"]
    if isinstance(t, (dict, list)):
        return _value(t, name)
    if t == "null":
        return st.none()
    if t == "string":
        return IDS if name.endswith("_id") or name.endswith("account") else TEXT
    if t == "long":
        return TIMES if node.get("logicalType") == "timestamp-millis" else LONGS
    if t == "int":
        return INTS
    if t in ("double", "float"):
        return DOUBLES
    if t == "boolean":
        return st.booleans()
    if t == "enum":
        return st.sampled_from(node["symbols"])
    if t == "array":
        return st.lists(_value(node["items"], name), max_size=5) | st.just([f"h{i}" for i in range(5_000)])
    if t == "map":
        return st.dictionaries(st.text(max_size=10), _value(node["values"], name), max_size=5) | st.just(
            {f"t{i}": 0.1 for i in range(5_000)})
    raise AssertionError(f"no strategy for {node}")


def record(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f["name"]: _value(f["type"], f["name"]) for f in schema(name).raw["fields"]})


def _framed(name: str, rec: dict[str, Any], offset: int) -> RawMessage:
    return RawMessage(TOPICS[name], 0, offset, name, value=encode_single_object(name, rec))


DAY = 86_400_000
# nearly valid money between the registered accounts: the ledger's sums see ceilings, repeats and conflicts
NEAR_TX = st.builds(lambda i, amount, dt, interest: ("Transaction", {**tx(f"n{i}", "X1", "R1", amount, ts=T0 + dt),
                                                                    "interest": interest}),
                    st.integers(0, 4), st.sampled_from([1, 10**15, 10**15 - 1]) | LONGS,
                    st.integers(-20 * DAY, 20 * DAY), st.none() | st.sampled_from([0, 1]))
ANY_RECORD = st.sampled_from(INPUT_RECORDS).flatmap(lambda n: st.tuples(st.just(n), record(n))) | NEAR_TX
VALID_FRAME = raw("custody.transactions", 0, 0, "Transaction", tx("v", "X1", "R1", 100)).value
assert VALID_FRAME is not None
RAW_BYTES = st.one_of(
    st.binary(max_size=64),
    st.integers(0, len(VALID_FRAME) - 1).map(lambda n: VALID_FRAME[:n]),  # truncated
    st.binary(max_size=64).map(lambda b: VALID_FRAME[:10] + b),  # the right header, a garbage body
    st.binary(min_size=1, max_size=16).map(lambda b: VALID_FRAME + b),  # trailing bytes
    st.just(b"\xc3\x01" + b"\xff" * 8),
    st.none(),  # a tombstone
)


def run_all(messages: list[RawMessage]) -> None:
    dead = MemoryDeadLetters()
    p = Pipeline(ListSource(messages, batch=4), Ledger(), Assessor(use_hbos=False), [], dead,
                 dead_letter_policy=DeadLetterPolicy(max_ratio=1.0, min_seen=0))  # the cap stops on purpose
    stats = p.run()                                                               # never raises
    assert stats.inputs == len(messages)
    assert stats.applied + stats.duplicates + stats.dead == len(messages) and stats.pending == 0
    assert len(dead.items) == stats.dead
    positions = [(d.source.topic, d.source.partition, d.source.offset) for d in dead.items]
    assert len(set(positions)) == len(positions)  # each dead input once
    L = p.ledger
    lo, hi = INT64
    assert 0 <= L.now_ms <= time.time() * 1000 + 86_400_000
    for n, data in L.graph.nodes(data=True):
        if data.get("kind") == "account":
            assert lo <= data["balance"] <= hi and all(lo <= c <= hi for c in data["comp"])
    for _, _, e in L.graph.edges(data=True):
        if e.get("kind") == "flow":
            assert 0 < e["amount"] <= hi and all(0 <= x <= hi for x in e["by_type"])
    for d in L.disclosures.values():
        for x in d:
            assert all(v is None or math.isfinite(v) for v in (x.avg_annual_yield, x.avg_term_days,
                                                               x.overdue_rate, x.top10_borrower_share))
    for a in p.latest:
        assert math.isfinite(a.score) and 0 <= a.score <= 100


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.lists(ANY_RECORD, min_size=1, max_size=12))
def test_records_of_every_type_with_extreme_values_never_crash_the_loop(records):
    msgs = base() + [_framed(n, r, i) for i, (n, r) in enumerate(records)]
    run_all(msgs)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(INPUT_RECORDS), RAW_BYTES), min_size=1, max_size=12))
def test_raw_bytes_never_crash_the_loop(items):
    msgs = base() + [RawMessage(TOPICS[n], 1, i, n, value=v) for i, (n, v) in enumerate(items)]
    msgs.append(raw("custody.transactions", 2, 0, "Transaction", tx("after", "X1", "R1", 7)))
    run_all(msgs)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(INPUT_RECORDS), record("Transaction")), min_size=1, max_size=8))
def test_container_file_rows_of_any_shape_never_crash_the_loop(items):
    """Replay hands decoded rows over; a row under the wrong record name is a bad row, not a crash."""
    msgs = base() + [RawMessage(f"file-{n}", -1, i, n, row=dict(r)) for i, (n, r) in enumerate(items)]
    run_all(msgs)
