"""`fundwatch`: simulate, produce, topics, replay, run, serve, top, keys, audit."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.settings import Settings

__all__ = ["main", "build_pipeline", "build_framing"]

log = logging.getLogger("fundwatch")


def build_framing(settings: Settings, topics: dict[str, str]) -> Any:
    import os

    from schemas import SchemaCatalog
    from schemas.wire import ConfluentFraming, SchemaRegistryClient, SingleObjectFraming

    if settings.schema_registry_url:
        return ConfluentFraming(SchemaRegistryClient(settings.schema_registry_url),
                                {name: f"{t}-value" for name, t in topics.items()})
    dirs = [d for d in (settings.schema_dir or "").split(os.pathsep) if d]
    return SingleObjectFraming(SchemaCatalog(dirs))


def _assessor(settings: Settings) -> Any:
    from detectors.assess import Assessor
    from detectors.base import DetectorParams

    return Assessor(random_state=settings.random_state, alert_min_severity=settings.alert_min_severity,
                    refit_every_days=settings.refit_every_days,
                    params=DetectorParams(legal_yield_ceiling=settings.legal_yield_ceiling))


def build_pipeline(settings: Settings, source: Any, outputs: list[Any], dead_letters: Any, framing: Any = None,
                   checkpoint: bool = False, live: bool = False, population: Any = None) -> Any:
    from graph.ledger import Ledger
    from ingest.dead_letters import DeadLetterPolicy
    from ingest.pipeline import Pipeline
    from schemas.records import DAY_MS

    return Pipeline(source, Ledger(retention_days=settings.retention_days), _assessor(settings), outputs,
                    dead_letters, framing=framing,
                    dead_letter_policy=DeadLetterPolicy(settings.dead_letter_max_ratio, settings.dead_letter_min_seen),
                    assess_every_ms=settings.assess_every_days * DAY_MS,
                    max_pending=settings.max_pending,
                    idle_assess_s=settings.idle_assess_seconds,
                    checkpoint_path=settings.checkpoint_path if checkpoint else None,
                    checkpoint_every_s=settings.checkpoint_every_seconds,
                    pause_on_dead_letter_cap=live, limits=settings.limits(), population=population)


def kafka_pipeline(settings: Settings, store: Any) -> Any:
    """The live pipeline: consumer group in, risk.* topics, dead-letter topic and the API's store out."""
    from ingest.dead_letters import KafkaDeadLetters
    from ingest.kafka_io import KafkaOutput, ensure_topics, make_producer
    from ingest.sources import KafkaSource
    from schemas import INPUT_RECORDS
    from service.population import SharedPopulation

    names = ensure_topics(settings.bootstrap, settings.topic_prefix)
    framing = build_framing(settings, names)
    source = KafkaSource(settings.bootstrap, settings.group_id, {names[n]: n for n in INPUT_RECORDS},
                         session_timeout_ms=settings.session_timeout_ms,
                         heartbeat_interval_ms=settings.heartbeat_interval_ms,
                         max_poll_records=settings.max_poll_records, instance_id=settings.worker_instance_id)
    producer = make_producer(settings.bootstrap)
    # the workers of one group share the population part through the store (one worker: it leads itself)
    population = SharedPopulation(store, f"{settings.topic_prefix}{settings.group_id}", settings.worker_instance_id)
    return build_pipeline(settings, source, [store, KafkaOutput(producer, names, framing, bootstrap=settings.bootstrap)],
                          KafkaDeadLetters(producer, names["DeadLetter"], bootstrap=settings.bootstrap), framing,
                          checkpoint=True, live=True, population=population)


# ---- sub-commands -----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.simulator import simulate, write_world

    t = time.monotonic()
    world = simulate(args.platforms, args.days, args.seed)
    counts = write_world(world, Path(args.out))
    schemes = sum(1 for p in world.labels["platforms"].values() if p["scheme"])
    print(json.dumps({"out": args.out, "records": counts, "scheme_platforms": schemes,
                      "seconds": round(time.monotonic() - t, 1)}, ensure_ascii=False))
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.kafka_io import produce_world, topic_names

    if not _broker_ready(settings):
        return 2
    t = time.monotonic()
    counts = produce_world(args.dir, settings.bootstrap, prefix=settings.topic_prefix,
                           framing=build_framing(settings, topic_names(settings.topic_prefix)))
    print(json.dumps({"bootstrap": settings.bootstrap, "produced": counts,
                      "seconds": round(time.monotonic() - t, 1)}))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.dead_letters import FileDeadLetters
    from ingest.report import ReportOutput
    from ingest.sources import FileSource

    if not FileSource(args.dir).files():
        print(f"fundwatch: no container files in {args.dir}", file=sys.stderr)
        return 2
    unreadable = FileSource(args.dir).unreadable()
    for problem in unreadable:
        print(f"fundwatch: {problem}", file=sys.stderr)
    if unreadable:
        return 2
    report = ReportOutput()
    outputs: list[Any] = [report]
    if args.db or args.db_dsn:
        from service.store import Store

        outputs.append(Store(args.db_dsn or args.db))
    dead = FileDeadLetters(args.dead_letters or settings.dead_letter_file)
    pipeline = build_pipeline(settings, FileSource(args.dir), outputs, dead)
    stats = pipeline.run()
    report.write(args.report, stats.as_dict())
    print(json.dumps({"report": args.report, **stats.as_dict(), "dead_letter_file": str(dead.path)}))
    return 0


def _broker_ready(settings: Settings) -> bool:
    """Create the topics up front, so a missing broker is one clear line, not a traceback from the lifespan."""
    from kafka.errors import KafkaError

    from ingest.kafka_io import ensure_topics

    try:
        ensure_topics(settings.bootstrap, settings.topic_prefix)
        return True
    except KafkaError as exc:
        print(f"fundwatch: no Kafka broker answers at {settings.bootstrap} ({type(exc).__name__}); "
              f"start the project's broker with `ops/kafka.sh start` and pass --bootstrap HOST:PORT", file=sys.stderr)
        return False


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    """`fundwatch topics create`: every topic with its partitions and cleanup policy, so a bank can publish first."""
    from kafka.errors import KafkaError

    from ingest.kafka_io import TOPIC_LAYOUT, ensure_topics

    try:
        names = ensure_topics(settings.bootstrap, settings.topic_prefix)
    except KafkaError as exc:
        print(f"fundwatch: no Kafka broker answers at {settings.bootstrap} ({type(exc).__name__})", file=sys.stderr)
        return 2
    for name, topic in names.items():
        parts, compacted = TOPIC_LAYOUT.get(name, (1, False))
        print(f"{topic:<40} {parts:>2} partitions  cleanup.policy={'compact' if compacted else 'delete'}")
    return 0


def record_publisher(settings: Settings) -> Any:
    """The channel that publishes outcomes and tip-offs recorded through the API to their topics."""
    from ingest.kafka_io import make_producer, topic_names
    from service.delivery import RecordPublisher

    names = topic_names(settings.topic_prefix)
    return lambda store: RecordPublisher(store, make_producer(settings.bootstrap), names,
                                         build_framing(settings, names))


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.api import PipelineRunner, create_app

    if not _broker_ready(settings):
        return 2
    _stacks_on_sigusr1()
    runner = PipelineRunner(lambda store: kafka_pipeline(settings, store))
    app = create_app(settings, runner, channels=[record_publisher(settings)])
    print(f"fundwatch: consuming {settings.bootstrap} as group {settings.group_id}; "
          f"API on http://{settings.host}:{settings.port}/docs", flush=True)
    # SIGTERM/SIGINT end it within seconds: open SSE streams get 5 s, then the pipeline checkpoints and stops
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           timeout_graceful_shutdown=5, proxy_headers=settings.trust_proxy_headers))

    def watch() -> None:
        """A pipeline that died for good ends the process, non-zero, so a supervisor restarts it."""
        while not server.should_exit:
            t = runner.thread
            if t is not None and not t.is_alive():
                server.should_exit = True
                return
            time.sleep(0.5)

    threading.Thread(target=watch, name="fundwatch-watch", daemon=True).start()
    server.run()
    if runner.thread is not None and not runner.stop.is_set() or runner.error:
        print(f"fundwatch: the pipeline stopped: {runner.error or 'its source ended'}", file=sys.stderr)
        return 1
    return 0


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` writes every thread's stack to stderr: where a loop that health calls stalled is held."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.api import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=5, proxy_headers=settings.trust_proxy_headers)
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Make, list and revoke API keys in the service's store (the service need not be running)."""
    from service.auth import KeyError_, create_key
    from service.store import NotFound, Store

    store = Store(settings.store_target)
    try:
        if args.keys_command == "create":
            try:
                token, desc = create_key(store, name=args.name, role=args.role, departments=args.department or [],
                                         jurisdictions=args.jurisdiction or [], custodian_id=args.custodian_id,
                                         all_platforms=args.all_platforms, created_by="cli")
            except KeyError_ as exc:
                print(f"fundwatch keys: {exc}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps({**desc, "key": token}, ensure_ascii=False))
            else:
                print(token)
                print(f"# {desc['role']} key {desc['key_id']} for {desc['name']}: shown once, stored only as a "
                      f"salted hash", file=sys.stderr)
        elif args.keys_command == "demo":
            return _demo_keys(store, args)
        elif args.keys_command == "list":
            for k in store.keys():
                scope = ",".join(k["departments"] + k["jurisdictions"] + ([k["custodian_id"]] if k["custodian_id"]
                                                                          else []))
                state = "revoked" if k["revoked_at"] else "active"
                print(f"{k['key_id']}  {k['role']:<9} {state:<7} {scope or '-':<24} {k['name']}")
        else:
            try:
                store.revoke_key(args.key_id, "cli")
            except NotFound:
                print(f"fundwatch keys: no active key {args.key_id}", file=sys.stderr)
                return 2
            print(f"revoked {args.key_id}")
        return 0
    finally:
        store.close()


def _demo_keys(store: Any, args: argparse.Namespace) -> int:
    """One key per role for a simulated world: the district and the custodian with the most platforms."""
    from collections import Counter

    import fastavro

    from ingest.sources import FILES
    from service.auth import create_key

    path = Path(args.world) / FILES["Platform"]
    platforms: list[dict[str, Any]] = []
    if path.exists():
        with open(path, "rb") as fh:
            platforms = [r for r in fastavro.reader(fh) if isinstance(r, dict)]
    if not platforms:
        print(f"fundwatch keys demo: no platforms in {args.world}", file=sys.stderr)
        return 2
    county = Counter(p["jurisdiction"] for p in platforms).most_common(1)[0][0]
    bank = Counter(p["custodian_id"] for p in platforms if p.get("custodian_id")).most_common(1)[0][0]
    specs = [("admin", "系统管理员 operations", {}),
             ("pboc", "人行中心支行 PBoC branch analyst", {}),
             ("regulator", "银监分局 banking regulator officer", {"departments": ["BANKING_REGULATOR"]}),
             ("district", f"属地政府 district {county}", {"jurisdictions": [county]}),
             ("custodian", f"存管银行 custodian {bank}", {"custodian_id": bank})]
    out = []
    for role, name, extra in specs:
        token, _ = create_key(store, name=name, role=role, created_by="demo", **extra)
        out.append({"role": role, "name": name, "key": token})
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for k in out:
            print(f"{k['role']:<10} {k['key']}   # {k['name']}")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """`fundwatch audit verify`: walk the hash chain; name every entry that was edited, removed or inserted."""
    from service.store import Store

    store = Store(settings.store_target)
    try:
        broken = store.verify_audit()
        n = store.audit_count()
        head = store.audit_head()
        cut = None
        if args.expect_head:
            seq, _, digest = args.expect_head.partition(":")
            cut = store.check_audit_head(int(seq), digest)
    finally:
        store.close()
    for b in broken:
        print(f"audit entry {b['seq']}: {'; '.join(b['problems'])}")
    if cut:
        print(f"audit head: {cut}")
    if broken or cut:
        print(f"audit log BROKEN: {len(broken)} of {n} entries fail the hash chain"
              f"{'; the recorded head does not match' if cut else ''}", file=sys.stderr)
        return 1
    print(f"audit log intact: {n} entries, hash chain verified")
    if head:
        print(f"head {head['seq']}:{head['hash']} (record it elsewhere; --expect-head checks it later)")
    return 0


def _get(url: str, key: str | None = None) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def cmd_top(args: argparse.Namespace, settings: Settings) -> int:
    """Wait until the service has caught up, then print the riskiest platforms with their findings."""
    base = args.api.rstrip("/")
    deadline = time.monotonic() + args.wait
    while True:
        try:
            health = _get(f"{base}/healthz")
            if health["pipeline"].get("error"):
                print(f"fundwatch: pipeline failed: {health['pipeline']['error']}", file=sys.stderr)
                return 1
            if health["platforms_scored"] and (health["pipeline"].get("caught_up") or not health["pipeline"]["running"]):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(f"fundwatch: {base} did not catch up within {args.wait}s", file=sys.stderr)
            return 1
        time.sleep(1)
    key = args.key or settings.api_key
    if not key:
        print("fundwatch top: needs an API key (--key or FUNDWATCH_API_KEY); make one with `fundwatch keys create`",
              file=sys.stderr)
        return 2
    ranked = _get(f"{base}/v1/platforms?limit={args.n}", key)
    print(f"{ranked['total']} platforms scored; the {min(args.n, ranked['total'])} riskiest:\n")
    for i, p in enumerate(ranked["items"], 1):
        detail = _get(f"{base}/v1/platforms/{p['platform_id']}", key)
        print(f"{i:2d}. {p['score']:5.1f} {p['tier']:<8} {p['platform_id']} {p['name']} ({p['kind']}, "
              f"{p['licence']}, {p['jurisdiction']}) -> {p['disposition']}; leads: {', '.join(p['lead_departments'])}")
        for f in detail["findings"][:4]:
            print(f"      [{f['severity']}] {f['detector']}: {f['summary_zh']}")
            print(f"      {'':>{len(f['severity']) + 2}} {f['summary_en']}")
            if f["evidence"]["tx_ids"]:
                print(f"      {'':>{len(f['severity']) + 2}} evidence: {', '.join(f['evidence']['tx_ids'][:4])}"
                      f"{' ...' if len(f['evidence']['tx_ids']) > 4 else ''}")
    print(f"\nAPI: {base}/docs  (ranking {base}/v1/platforms, alerts {base}/v1/alerts)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fundwatch", description=__doc__)
    p.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT (env FUNDWATCH_BOOTSTRAP)")
    p.add_argument("--topic-prefix", help="prefix for every topic name")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    dsn_help = dict(help="the store is this PostgreSQL database (postgresql://user:pw@host:port/db; env "
                         "FUNDWATCH_DB_DSN) instead of the SQLite file")
    s = sub.add_parser("simulate", help="write a synthetic custodian world as Avro container files")
    s.add_argument("--platforms", type=int, default=120)
    s.add_argument("--days", type=int, default=120)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out", required=True)
    s = sub.add_parser("produce", help="publish a world's files to the custody.* topics")
    s.add_argument("dir")
    s = sub.add_parser("topics", help="create every topic (partitions, compaction) before anyone publishes")
    ts = s.add_subparsers(dest="topics_command", required=True)
    ts.add_parser("create", help="create the topics that are missing; print the layout")
    s = sub.add_parser("replay", help="run the pipeline over container files, no Kafka")
    s.add_argument("dir")
    s.add_argument("--report", required=True)
    s.add_argument("--db", help="also write scores and alerts to this SQLite store")
    s.add_argument("--db-dsn", help="... or to this PostgreSQL store (postgresql://...)")
    s.add_argument("--dead-letters", help="dead-letter JSON-lines file")
    s.add_argument("--assess-every-days", type=int)
    s = sub.add_parser("run", help="consume the topics, score, publish, and serve the API")
    s.add_argument("--port", type=int)
    s.add_argument("--group-id")
    s.add_argument("--db")
    s.add_argument("--db-dsn", **dsn_help)  # type: ignore[arg-type]
    s.add_argument("--checkpoint-dir", help="where checkpoints live (default var/checkpoints)")
    s = sub.add_parser("serve", help="serve the API over an existing store")
    s.add_argument("--port", type=int)
    s.add_argument("--db")
    s.add_argument("--db-dsn", **dsn_help)  # type: ignore[arg-type]
    s = sub.add_parser("top", help="print the riskiest platforms from a running service")
    s.add_argument("--api", default="http://127.0.0.1:8000")
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--wait", type=float, default=300)
    s.add_argument("--key", help="API key (env FUNDWATCH_API_KEY)")
    s = sub.add_parser("keys", help="make, list and revoke API keys")
    s.add_argument("--db", help="the service's store (default var/fundwatch.db, env FUNDWATCH_DB_PATH)")
    s.add_argument("--db-dsn", **dsn_help)  # type: ignore[arg-type]
    ks = s.add_subparsers(dest="keys_command", required=True)
    db_here = dict(default=argparse.SUPPRESS, help="the service's store (also accepted before the sub-command)")
    dsn_here = dict(default=argparse.SUPPRESS, help="the service's PostgreSQL store (also accepted before the "
                                                    "sub-command)")
    k = ks.add_parser("create", help="make a key; prints it once")
    k.add_argument("--db", **db_here)  # type: ignore[arg-type]
    k.add_argument("--db-dsn", **dsn_here)  # type: ignore[arg-type]
    k.add_argument("--role", required=True, choices=["custodian", "pboc", "regulator", "district", "admin"])
    k.add_argument("--name", required=True, help="who holds the key")
    k.add_argument("--department", action="append", help="regulator: a lead department (repeatable)")
    k.add_argument("--jurisdiction", action="append", help="district: a 6-digit code (repeatable)")
    k.add_argument("--custodian-id", help="custodian: the bank's custodian_id")
    k.add_argument("--all-platforms", action="store_true", help="admin: also see every platform")
    k.add_argument("--json", action="store_true", help="print the key and its description as JSON")
    k = ks.add_parser("list", help="every key (never the secret)")
    k.add_argument("--db", **db_here)  # type: ignore[arg-type]
    k.add_argument("--db-dsn", **dsn_here)  # type: ignore[arg-type]
    k = ks.add_parser("demo", help="one key per role for a simulated world (make demo)")
    k.add_argument("--db", **db_here)  # type: ignore[arg-type]
    k.add_argument("--db-dsn", **dsn_here)  # type: ignore[arg-type]
    k.add_argument("--world", required=True, help="the world's directory (fundwatch simulate --out)")
    k.add_argument("--json", action="store_true")
    k = ks.add_parser("revoke", help="revoke a key now (its webhooks stop too)")
    k.add_argument("--db", **db_here)  # type: ignore[arg-type]
    k.add_argument("--db-dsn", **dsn_here)  # type: ignore[arg-type]
    k.add_argument("key_id")
    s = sub.add_parser("audit", help="the audit log")
    s.add_argument("--db", help="the service's store")
    s.add_argument("--db-dsn", **dsn_help)  # type: ignore[arg-type]
    au = s.add_subparsers(dest="audit_command", required=True)
    v = au.add_parser("verify", help="check the hash chain; exit 1 naming every broken entry")
    v.add_argument("--db", **db_here)  # type: ignore[arg-type]
    v.add_argument("--db-dsn", **dsn_here)  # type: ignore[arg-type]
    v.add_argument("--expect-head", metavar="SEQ:HASH", help="a head printed earlier: the log must still hold it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    for opt, field in (("bootstrap", "bootstrap"), ("topic_prefix", "topic_prefix"), ("port", "port"),
                       ("group_id", "group_id"), ("db", "db_path"), ("assess_every_days", "assess_every_days"),
                       ("checkpoint_dir", "checkpoint_dir")):
        val = getattr(args, opt, None)
        if val is not None and not (opt == "db" and args.command == "replay"):
            overrides[field] = val
    if getattr(args, "db_dsn", None) is not None and args.command != "replay":
        overrides["db_dsn"] = args.db_dsn
    elif getattr(args, "db", None) is not None and args.command != "replay":
        overrides["db_dsn"] = None  # a file named on the command line beats a DSN in the environment
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # one line per wrong setting, not a traceback
        for err in exc.errors():
            print(f"fundwatch: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}", file=sys.stderr)
        return 2
    handlers = {"simulate": cmd_simulate, "produce": cmd_produce, "replay": cmd_replay, "run": cmd_run,
                "serve": cmd_serve, "top": cmd_top, "keys": cmd_keys, "audit": cmd_audit,
                "topics": cmd_topics}
    return handlers[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
