"""Alert delivery delay on the demo world: from the moment the pipeline writes an alert event (the
outbox's `at`) to its arrival at an SSE client and at a webhook receiver, p50/p99.

    .venv/bin/python benchmarks/delivery.py [--platforms 120 --days 120 --seed 7]

Starts the project's broker (ops/kafka.sh), runs `fundwatch run` as a real process, opens one SSE
stream and registers one webhook (a receiver on 127.0.0.1 that verifies every signature) with a
PBoC key, then publishes the world and waits until the service has caught up. The baseline, in the
same run, is the same receiver's round trip for a signed POST sent directly (no fundwatch between).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.simulator import simulate, write_world  # noqa: E402
from service.auth import create_key  # noqa: E402
from service.cli import main as cli  # noqa: E402
from service.delivery import sign  # noqa: E402
from service.store import Store  # noqa: E402
from tests.servers import Receiver, free_port, service_env, start, stop, wait_for  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def sse_reader(url: str, key: str, out: list[tuple[dict, float]], stop_flag: threading.Event) -> None:
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(600)) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append((json.loads(line[6:]), time.time()))
            if stop_flag.is_set():
                return


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platforms", type=int, default=120)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    bootstrap = subprocess.run([str(ROOT / "ops/kafka.sh"), "start"], capture_output=True, text=True,
                               check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="fw-delivery-"))
    world = tmp / "world"
    write_world(simulate(args.platforms, args.days, args.seed), world)
    db = str(tmp / "svc.db")
    key, _ = create_key(Store(db), name="bench", role="pboc")
    prefix = f"bench{int(time.time())}."
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp, db, FUNDWATCH_DELIVERY_POLL_SECONDS="0.2", FUNDWATCH_IDLE_ASSESS_SECONDS="2")
    proc = start(["--bootstrap", bootstrap, "--topic-prefix", prefix, "run", "--port", str(port), "--group-id",
                  f"{prefix}svc", "--db", db, "--checkpoint-dir", str(tmp / "ckpt")], env, port)
    receiver = Receiver()
    flag = threading.Event()
    sse: list[tuple[dict, float]] = []
    try:
        hook = httpx.post(f"{base}/v1/webhooks", json={"url": receiver.url},
                          headers={"Authorization": f"Bearer {key}"}).json()
        receiver.secret = hook["secret"]
        reader = threading.Thread(target=sse_reader, args=(f"{base}/v1/alerts/stream", key, sse, flag), daemon=True)
        reader.start()
        time.sleep(2)
        # baseline: the receiver's own round trip for a signed POST, same process, same machine
        base_rt = []
        with httpx.Client() as c:
            for i in range(200):
                body = json.dumps({"id": -i - 1, "type": "baseline", "at": 0, "alert": {}}).encode()
                ts = int(time.time())
                t = time.perf_counter()
                c.post(receiver.url, content=body, headers={"X-Fundwatch-Signature": sign(receiver.secret, ts, body),
                                                            "X-Fundwatch-Timestamp": str(ts)})
                base_rt.append((time.perf_counter() - t) * 1000)
        receiver.delivered.clear()
        assert cli(["--bootstrap", bootstrap, "--topic-prefix", prefix, "produce", str(world)]) == 0

        def caught_up() -> bool:
            return bool(httpx.get(f"{base}/healthz").json()["pipeline"].get("caught_up"))

        wait_for(caught_up, 900, "catch-up")
        total = Store(db).last_event_seq()
        wait_for(lambda: len(receiver.delivered) >= total and len(sse) >= total, 120, "every event delivered")
    finally:
        flag.set()
        stop(proc)
        receiver.close()
    hook_ms = [(e["_received"] * 1000 - e["at"]) for e in receiver.delivered]
    sse_ms = [(t * 1000 - ev["at"]) for ev, t in sse]
    print(json.dumps({
        "world": {"platforms": args.platforms, "days": args.days, "seed": args.seed}, "events": total,
        "sse_ms": {"p50": round(pct(sse_ms, 0.5), 1), "p99": round(pct(sse_ms, 0.99), 1), "n": len(sse_ms)},
        "webhook_ms": {"p50": round(pct(hook_ms, 0.5), 1), "p99": round(pct(hook_ms, 0.99), 1),
                       "n": len(hook_ms)},
        "baseline_direct_post_ms": {"p50": round(statistics.median(base_rt), 2),
                                    "p99": round(pct(base_rt, 0.99), 2)},
        "poll_interval_ms": 200}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
