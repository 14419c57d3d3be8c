"""The HTTP API fuzzed from its own OpenAPI with schemathesis (issue 7): no 5xx, and every answer as declared.

The schema is loaded from the app itself over ASGI (no network); schemathesis starts the app's real
lifespan, so every route runs against the SQLite store a replay of a small simulated world filled,
with keys for several roles. Each operation is fuzzed as each principal and without a key, with a
bounded number of examples and a fixed seed (deterministic: the same cases on every run).

- Path parameters are sometimes swapped for ids that exist (platforms, a flagged one's detectors,
  alerts), so the fuzz reaches past the 404 into the routes' own work.
- `GET /v1/alerts/stream` never ends by itself: it is fuzzed with a bounded read (schemathesis keeps
  the first complete event and cancels the stream; a request timeout backs that up).
- `POST /v1/tips` is limited per client address (every request here comes from one): the limit is
  raised for this test (test_workflow and test_delivery check the limiter itself).
- Webhook delivery is held still (a poll interval of an hour): the fuzz registers webhooks for made-up
  addresses and works alerts, and no test may post to the internet. SSE streams sleep on the same
  interval, which only matters to a stream with nothing to send; it is cut at the read deadline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi as st_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.sources import FileSource
from service.api import create_app
from service.auth import create_key
from service.settings import Settings
from service.store import Store

SEED = 20240607
MAX_EXAMPLES = 12  # per operation, role and generation mode: about 40 s of fuzzing on 2 cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
WHO = ["anonymous", "admin", "pboc", "district", "regulator"]
STREAM = "/v1/alerts/stream"
STREAM_EXAMPLES = 2
STREAM_READ_S = 1.5  # 0.3 s was flaky on a loaded machine (the first response headers came later)


@pytest.fixture(scope="module")
def fuzz_world(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store filled by replaying the small world, and one key per role; closed before the app opens it."""
    d = tmp_path_factory.mktemp("fuzz")
    db = d / "store.db"
    store = Store(str(db))
    try:
        Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store], MemoryDeadLetters()).run()
        _, platforms = store.platforms(limit=1000)
        _, alerts = store.alerts(limit=1000)
        assert platforms and alerts, "the small world scores platforms and opens alerts"
        county = platforms[0]["jurisdiction"]
        specs: dict[str, dict[str, Any]] = {
            "admin": dict(role="admin"),
            "pboc": dict(role="pboc"),
            "district": dict(role="district", jurisdictions=[county]),
            "regulator": dict(role="regulator", departments=["BANKING_REGULATOR"]),
        }
        keys = {who: create_key(store, name=f"fuzz {who}", **spec)[0] for who, spec in specs.items()}
    finally:
        store.close()
    flagged = next(p for p in platforms if p["findings"])
    others = [p["platform_id"] for p in platforms if p is not flagged][:4]
    return {"dir": d, "db": db, "keys": keys, "platform_ids": [flagged["platform_id"], *others],
            "detectors": sorted({f["detector"] for f in flagged["findings"]}),
            "findings": sorted({(p["platform_id"], f["detector"]) for p in platforms for f in p["findings"]})[:12],
            "alert_ids": [a["alert_id"] for a in alerts[:5]]}


@pytest.fixture(scope="module")
def api_schema(fuzz_world: dict[str, Any]) -> Iterator[Any]:
    d = fuzz_world["dir"]
    settings = Settings(db_path=str(fuzz_world["db"]), secret_key_file=str(d / "secret.key"),
                        tip_rate_per_hour=1_000_000, delivery_poll_seconds=3600)
    app = create_app(settings)
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "max-stream-events": 1,  # the alert stream: its first event, then cancelled
        "request-timeout": 5,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    })
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    real = {"platform_id": fuzz_world["platform_ids"], "detector": fuzz_world["detectors"],
            "alert_id": fuzz_world["alert_ids"]}

    @loaded.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        """Half the time, ids that exist, so a route's work past its 404 is fuzzed too."""
        generated = path_parameters or {}
        if {"platform_id", "detector"} <= set(generated):  # a finding that exists: the pair, not each on its own
            pairs = st.sampled_from(fuzz_world["findings"])
            return st.one_of(st.just(path_parameters),
                             pairs.map(lambda pd: {**generated, "platform_id": pd[0], "detector": pd[1]}))
        known = {k: st.sampled_from(v) for k, v in real.items() if k in generated}
        if not known:
            return st.just(path_parameters)
        return st.one_of(st.just(path_parameters), st.fixed_dictionaries(known).map(lambda k: {**generated, **k}))

    try:
        yield loaded
    finally:
        st_asgi.shutdown_lifespans()  # the app's lifespan: its store closes, its delivery thread ends


def operations(loaded: Any) -> list[APIOperation]:
    ops = [result.ok() for result in loaded.get_all_operations()]
    assert len(ops) >= 25, [op.label for op in ops]  # every route, the stream included
    return ops


def negatable(op: APIOperation) -> bool:
    """Whether the operation takes anything a negative example could get wrong (`GET /healthz` does not)."""
    raw = op.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody") or raw.get("security"))


def fuzz(op: APIOperation, mode: GenerationMode, headers: dict[str, str] | None, seen: dict[str, set[int]]) -> None:
    """Bounded, derandomized examples of one operation in one mode, each sent and checked."""
    stream = op.path == STREAM
    # The stream's first block is a comment, not an event: a stream with nothing to replay is cut at the
    # read deadline (what it sent by then is checked), so it gets fewer examples and a short deadline.
    kwargs: dict[str, Any] = {"timeout": STREAM_READ_S} if stream else {}

    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=STREAM_EXAMPLES if stream else MAX_EXAMPLES, derandomize=True, database=None,
                         deadline=None, suppress_health_check=list(HealthCheck),
                         phases=[Phase.explicit, Phase.generate, Phase.shrink])
    def run(case: Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS, **kwargs)
        seen.setdefault(op.label, set()).add(response.status_code)

    run()


@pytest.mark.parametrize("who", WHO)
def test_no_server_errors_and_answers_as_declared(api_schema: Any, fuzz_world: dict[str, Any], who: str) -> None:
    """Every operation, positive and negative examples, as one principal (or none: then whatever
    schemathesis generates for the security scheme, if anything, is sent). Every failing operation is
    reported, not only the first."""
    headers = None if who == "anonymous" else {"Authorization": f"Bearer {fuzz_world['keys'][who]}"}
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
    for op in operations(api_schema):
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable(op) else [])
        for mode in modes:
            try:
                fuzz(op, mode, headers, seen)
            except (Exception, FailureGroup) as exc:  # the checks' failures, or the app's own exception
                failures.append(f"--- {op.label} ({mode.value}, as {who})\n{exc}")
    assert not failures, "\n\n".join(failures)
    # the fuzz got somewhere: past the key check for principals, past the 404 with real ids, the tip
    # limiter out of the way, and never past the key check without one
    ok = {label for label, codes in seen.items() if any(200 <= c < 300 for c in codes)}
    assert {"GET /healthz", "POST /v1/tips"} <= ok, seen
    if who == "anonymous":
        assert ok == {"GET /healthz", "POST /v1/tips"}, seen
    else:
        assert {"GET /v1/me", "GET /v1/platforms", "GET /v1/alerts", "GET /v1/webhooks"} <= ok, seen
    if who == "pboc":
        assert {"GET /v1/platforms/{platform_id}", "GET /v1/platforms/{platform_id}/findings/{detector}/graph",
                "GET /v1/alerts/{alert_id}", "GET /v1/alerts/stream"} <= ok, seen
    if who == "admin":
        assert {"GET /v1/keys", "GET /v1/audit", "GET /v1/audit/verify"} <= ok, seen
