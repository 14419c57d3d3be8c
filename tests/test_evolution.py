"""Other writer versions of the contract: resolved to fundwatch's reader schemas by Avro's rules, never lost.

The writer schemas in tests/fixtures/writer_schemas are what a bank would publish: a newer
Transaction (fields added with defaults), an older Transaction (amounts as int, no memo) and an
older Listing (int amount, float rate, no borrower_account).
"""
from __future__ import annotations

import copy
import http.server
import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest

import schemas
from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.decode import DecodeError, Envelope, RawMessage, TransientError, decode
from ingest.pipeline import Pipeline
from ingest.sources import FILES, FileSource
from schemas import SchemaCatalog, writer_schema
from schemas.fingerprint import crc64_avro
from schemas.records import Account, Listing, Transaction
from schemas.wire import (SO_MAGIC, ConfluentFraming, FramingError, SchemaRegistryClient, SchemaSourceUnavailable,
                          SingleObjectFraming)
from tests.helpers import ListSource, raw
from tests.test_pipeline import PLATFORM, T0, account, tx

WRITERS = Path(__file__).parent / "fixtures" / "writer_schemas"
CODECS = ["null", "deflate", "bzip2", "xz", "snappy", "zstandard"]


def writer(file: str) -> dict[str, Any]:
    return json.loads((WRITERS / file).read_text(encoding="utf-8"))


def v2_tx(i: int) -> dict[str, Any]:
    return {**tx(f"v2-{i}", "X1", "R1", 1_000 + i, ts=T0 + 1_000 + i), "memo": f"备注{i}", "listing_id": "L1",
            "interest": i, "channel": "ONLINE", "branch_code": "0518"}


def v0_tx(i: int) -> dict[str, Any]:
    r = {**tx(f"v0-{i}", "X1", "R1", 2_000 + i, ts=T0 + 2_000 + i), "interest": 7}
    del r["memo"]
    return r


def v0_listing(i: int) -> dict[str, Any]:
    return dict(listing_id=f"L{i}", platform_id="P1", kind="LOAN", amount=300_000 + i, annual_rate=0.125,
                term_days=90, listed_at=T0 + i)


def single_object(schema_json: dict[str, Any], record: dict[str, Any]) -> bytes:
    """What Avro's BinaryMessageEncoder writes with this writer schema."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema_json)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(copy.deepcopy(schema_json)), record)
    return SO_MAGIC + crc64_avro(canonical.encode()).to_bytes(8, "little") + buf.getvalue()


def msg(topic: str, offset: int, expected: str, value: bytes) -> RawMessage:
    return RawMessage(topic, 0, offset, expected, value=value)


def test_newer_and_older_writers_resolve_through_the_schema_directory():
    framing = SingleObjectFraming(SchemaCatalog([WRITERS]))
    got = decode(msg("t", 0, "Transaction", single_object(writer("transaction_v2.avsc"), v2_tx(1))), framing)
    assert isinstance(got, Envelope)
    expected = {k: v for k, v in v2_tx(1).items() if k not in ("channel", "branch_code")}
    assert got.record == Transaction(**expected)
    got = decode(msg("t", 1, "Transaction", single_object(writer("transaction_v0.avsc"), v0_tx(2))), framing)
    assert isinstance(got, Envelope) and got.record == Transaction(**v0_tx(2), memo=None)  # memo: reader's default
    got = decode(msg("t", 2, "Listing", single_object(writer("listing_v0.avsc"), v0_listing(3))), framing)
    assert isinstance(got, Envelope)
    assert got.record == Listing(**v0_listing(3), borrower_account=None)
    assert isinstance(got.record.amount, int) and isinstance(got.record.annual_rate, float)
    # fundwatch's own schema still takes the fast path: no writer to resolve
    s, _ = framing.unframe(schemas.schema("Transaction").fingerprint_le.join([SO_MAGIC, b""]))
    assert s is schemas.schema("Transaction") and s.writer is None


def test_an_account_written_before_holder_kind_resolves_with_no_schema_directory(tmp_path):
    """Account gained an optional holder_kind: a bank still writing the earlier Account (single-object messages or
    container files) is read as before, holder_kind null, with no FUNDWATCH_SCHEMA_DIR."""
    rec = account("B1", "BORROWER")
    got = decode(msg("custody.accounts", 0, "Account", single_object(writer("account_v1.avsc"), rec)),
                 SingleObjectFraming())
    assert isinstance(got, Envelope) and got.record == Account(**rec) and got.record.holder_kind is None
    new = decode(msg("custody.accounts", 1, "Account", single_object(schemas.schema("Account").raw,
                                                                     {**rec, "holder_kind": "NATURAL_PERSON"})),
                 SingleObjectFraming())
    assert isinstance(new, Envelope) and new.record.holder_kind == "NATURAL_PERSON"
    with open(tmp_path / FILES["Account"], "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(writer("account_v1.avsc")), [rec], codec="deflate")
    (row,) = [m for batch in iter(FileSource(tmp_path).poll, None) for m in batch]
    assert row.row == {**rec, "holder_kind": None}


def test_an_unknown_fingerprint_is_still_a_dead_letter_with_a_clear_reason():
    data = single_object(writer("transaction_v2.avsc"), v2_tx(1))
    got = decode(msg("custody.transactions", 5, "Transaction", data), SingleObjectFraming())
    assert isinstance(got, DecodeError)
    assert f"unknown schema fingerprint {data[2:10].hex()}" in got.reason and "FUNDWATCH_SCHEMA_DIR" in got.reason


def test_a_writer_that_cannot_resolve_is_a_dead_letter_naming_it(tmp_path):
    bad = copy.deepcopy(schemas.schema("Account").raw)
    for f in bad["fields"]:
        if f["name"] == "role":
            f["type"] = "string"  # a string cannot be read as fundwatch's AccountRole enum
    (tmp_path / "account_str.avsc").write_text(json.dumps(bad), encoding="utf-8")
    rec = account("X1", "EXTERNAL")
    got = decode(msg("t", 0, "Account", single_object(bad, rec)), SingleObjectFraming(SchemaCatalog([tmp_path])))
    assert isinstance(got, DecodeError) and "does not resolve to fundwatch's Account" in got.reason
    assert "account_str.avsc" in got.reason


def test_schema_directory_holding_fundwatchs_own_files_and_foreign_records(tmp_path):
    """A bank's directory may hold a copy of schemas/ (types/ included) and records fundwatch does not read."""
    for f in [*schemas.RECORD_FILES.values(), *schemas.TYPE_FILES.values()]:
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_bytes((schemas._HERE / f).read_bytes())
    (tmp_path / "other.avsc").write_text(json.dumps({"type": "record", "name": "bank.Ledger", "fields": []}))
    (tmp_path / "tx2.avsc").write_text((WRITERS / "transaction_v2.avsc").read_text(encoding="utf-8"))
    cat = SchemaCatalog([tmp_path])
    assert len(cat) == len(schemas.RECORD_FILES) + len(schemas.PREVIOUS_FILES) + 1
    assert cat.by_fingerprint(schemas.schema("Alert").fingerprint_le) is schemas.schema("Alert")


@pytest.mark.parametrize("codec", CODECS)
def test_container_files_with_an_evolved_writer_and_every_codec_are_read_without_loss(tmp_path, codec):
    records = [v2_tx(i) for i in range(50)]
    with open(tmp_path / FILES["Transaction"], "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(writer("transaction_v2.avsc")), records, codec=codec)
    with open(tmp_path / FILES["Listing"], "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(writer("listing_v0.avsc")), [v0_listing(i) for i in range(5)],
                        codec=codec)
    rows = [m for batch in iter(FileSource(tmp_path).poll, None) for m in batch]
    txs = [m.row for m in rows if m.expected == "Transaction"]
    assert txs == [{k: v for k, v in r.items() if k not in ("channel", "branch_code")} for r in records]
    listings = [m.row for m in rows if m.expected == "Listing"]
    assert listings == [{**v0_listing(i), "borrower_account": None} for i in range(5)]
    assert all(isinstance(m.row, dict) and decode(m, SingleObjectFraming()).__class__ is Envelope for m in rows)


# ---- a schema registry that is down ----------------------------------------------------------------
class Registry(http.server.ThreadingHTTPServer):
    """A Confluent-compatible registry's two calls fundwatch makes, on a real socket (started late on purpose)."""

    def __init__(self, port: int, schemas_by_id: dict[int, dict[str, Any]]) -> None:
        self.by_id = schemas_by_id
        self.calls = 0
        super().__init__(("127.0.0.1", port), RegistryHandler)


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:  # noqa: N802
        self.server.calls += 1
        sid = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/schemas/ids/") else -1
        if sid not in self.server.by_id:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error_code":40403,"message":"Schema not found"}')
            return
        body = json.dumps({"schema": json.dumps(self.server.by_id[sid])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - register a subject's schema: the same schema keeps its id
        self.server.calls += 1
        posted = json.loads(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"])
        known = {json.dumps(v, sort_keys=True): k for k, v in self.server.by_id.items()}
        sid = known.get(json.dumps(posted, sort_keys=True), max(self.server.by_id, default=0) + 1)
        self.server.by_id[sid] = posted
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps({"id": sid}).encode())

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def confluent(sid: int, schema_json: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(copy.deepcopy(schema_json)), record)
    return b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()


def test_registry_unreachable_is_transient_and_an_unknown_id_is_a_dead_letter():
    port = free_port()
    framing = ConfluentFraming(SchemaRegistryClient(f"http://127.0.0.1:{port}", timeout=2), {})
    data = confluent(7, writer("transaction_v2.avsc"), v2_tx(1))
    with pytest.raises(SchemaSourceUnavailable):
        framing.unframe(data)
    with pytest.raises(TransientError, match="unreachable"):
        decode(msg("custody.transactions", 3, "Transaction", data), framing)
    server = Registry(port, {7: writer("transaction_v2.avsc")})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = decode(msg("custody.transactions", 3, "Transaction", data), framing)
        assert isinstance(got, Envelope) and got.record.tx_id == "v2-1" and got.record.memo == "备注1"
        with pytest.raises(FramingError, match="no schema id 8"):
            framing.unframe(confluent(8, writer("transaction_v2.avsc"), v2_tx(1)))
        bad = decode(msg("custody.transactions", 4, "Transaction", confluent(8, writer("transaction_v2.avsc"),
                                                                               v2_tx(2))), framing)
        assert isinstance(bad, DecodeError) and "no schema id 8" in bad.reason
    finally:
        server.shutdown()
        server.server_close()


def test_pipeline_pauses_while_the_registry_is_down_and_loses_nothing():
    port = free_port()
    ids = {1: schemas.schema("Platform").raw, 2: schemas.schema("Account").raw, 3: writer("transaction_v2.avsc")}
    msgs = [RawMessage("custody.platforms", 0, 0, "Platform", value=confluent(1, ids[1], PLATFORM)),
            RawMessage("custody.accounts", 0, 0, "Account", value=confluent(2, ids[2], account("X1", "EXTERNAL"))),
            RawMessage("custody.accounts", 0, 1, "Account", value=confluent(2, ids[2], account("R1", "CLIENT_RESERVE")))]
    msgs += [RawMessage("custody.transactions", 1, i, "Transaction", value=confluent(3, ids[3], v2_tx(i)))
             for i in range(5)]
    dead = MemoryDeadLetters()
    framing = ConfluentFraming(SchemaRegistryClient(f"http://127.0.0.1:{port}", timeout=2), {})
    pipe = Pipeline(ListSource(msgs, 4), Ledger(), Assessor(use_hbos=False), [], dead, framing=framing)
    pipe.retry_first_s = 0.2
    server = Registry(port, ids)
    starter = threading.Timer(1.5, lambda: threading.Thread(target=server.serve_forever, daemon=True).start())
    starter.start()
    t = time.monotonic()
    try:
        stats = pipe.run()
    finally:
        starter.cancel()
        server.shutdown()
        server.server_close()
    assert time.monotonic() - t >= 1.5  # it waited for the registry ...
    assert dead.items == [] and stats.dead == 0  # ... and dead-lettered nothing
    assert stats.inputs == len(msgs) and pipe.ledger.tx_count == 5
    assert pipe.ledger.graph.nodes["R1"]["balance"] == sum(1_000 + i for i in range(5))


def test_pipeline_stopped_while_waiting_does_not_mark_the_message_done():
    port = free_port()
    msgs = [RawMessage("custody.platforms", 0, 0, "Platform", value=confluent(1, schemas.schema("Platform").raw,
                                                                               PLATFORM))]
    framing = ConfluentFraming(SchemaRegistryClient(f"http://127.0.0.1:{port}", timeout=1), {})
    source = ListSource(msgs, 1)
    pipe = Pipeline(source, Ledger(), Assessor(use_hbos=False), [], MemoryDeadLetters(), framing=framing)
    pipe.retry_first_s = 0.1
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    stats = pipe.run(stop=stop)
    assert stats.inputs == 0 and stats.dead == 0
    assert pipe._commit_points() == {}  # nothing committed: the platform is read again after a restart


def test_writer_schema_names_the_record_or_refuses():
    with pytest.raises(ValueError, match="not one of fundwatch's records"):
        writer_schema({"type": "record", "name": "bank.Ledger", "fields": []}, "x.avsc")
    aliased = {**writer("listing_v0.avsc"), "name": "bank.LoanListing", "aliases": ["fundwatch.Listing"]}
    assert writer_schema(aliased, "alias.avsc").name == "Listing"
