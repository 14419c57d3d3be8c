"""Recovery after kill -9 against the checkpoint interval, with real `fundwatch run` processes and the broker.

    ops/kafka.sh start && .venv/bin/python benchmarks/recovery.py [--intervals 5 15 60 none] [--kill-at 0.6]

Simulates one world and publishes it to a fresh topic prefix once (publishing it again for every interval
would double the benchmark's time); for each checkpoint interval (FUNDWATCH_CHECKPOINT_EVERY_SECONDS; `none`:
no checkpoint is written before the kill) starts `fundwatch run` as a consumer group of its own, with its
own checkpoint directory and database (a fresh group has no checkpoint: it reads from the start), kills it with
SIGKILL once /healthz says it has read `--kill-at` of the input, restarts it at once with the same settings
and measures the time from the restart until /healthz says caught up, and the records read again (inputs
after the restart minus what remained unread at the kill). The checkpoint left by the killed process is then
loaded and saved again in this process, for its size and save time. Prints a table, then the figures as JSON.
The baseline is `none` in the same run: a restart that rebuilds the state from the beginning of the topics.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402

NEVER = "1e9"  # seconds: the first checkpoint would come after the kill


def bootstrap_from_ops() -> str:
    res = subprocess.run([str(ROOT / "ops" / "kafka.sh"), "status"], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("no broker: run `ops/kafka.sh start` first")
    return res.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int) -> dict[str, Any] | None:
    """/healthz's body (200 or 503), or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            body: dict[str, Any] = json.load(r)
            return body
    except urllib.error.HTTPError as exc:  # 503: not ready, with the same body
        body = json.load(exc)
        return body
    except OSError:
        return None


def pipeline_stats(port: int) -> dict[str, Any]:
    h = health(port) or {}
    p: dict[str, Any] = h.get("pipeline") or {}
    return p


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def publish(world: Path, bootstrap: str) -> tuple[str, int]:
    """The world on a fresh topic prefix; returns the prefix and the number of records."""
    prefix = f"rb{uuid.uuid4().hex[:8]}."
    out = subprocess.run(cli("--bootstrap", bootstrap, "--topic-prefix", prefix, "produce", str(world)), cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return prefix, sum(json.loads(out.strip().splitlines()[-1])["produced"].values())


def one_interval(interval: str, prefix: str, total: int, bootstrap: str, tmp: Path, kill_at: float,
                 timeout_s: float) -> dict[str, Any]:
    group = f"recovery-{interval}"
    work = tmp / group
    work.mkdir()
    ckpt_dir = work / "ckpt"
    port = free_port()
    args = cli("--bootstrap", bootstrap, "--topic-prefix", prefix, "run", "--port", str(port),
               "--group-id", group, "--db", str(work / "r.db"), "--checkpoint-dir", str(ckpt_dir))
    env = {**os.environ, "FUNDWATCH_SECRET_KEY_FILE": str(work / "secret.key"),
           "FUNDWATCH_CHECKPOINT_EVERY_SECONDS": NEVER if interval == "none" else interval}

    def launch(log_name: str) -> subprocess.Popen[bytes]:
        with open(work / log_name, "wb") as log:
            return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    first = launch("first.log")
    started = time.monotonic()
    inputs_at_kill = 0
    try:
        while True:
            if first.poll() is not None:
                raise SystemExit(f"fundwatch run exited {first.returncode}: see {work / 'first.log'}")
            inputs_at_kill = int((pipeline_stats(port).get("stats") or {}).get("inputs", 0))
            if inputs_at_kill >= kill_at * total:
                break
            if time.monotonic() - started > timeout_s:
                raise SystemExit("the first run did not reach the kill point in time")
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    ran_s = time.monotonic() - started
    ckpts = list(ckpt_dir.glob("*.ckpt"))
    kept = work / "at-kill.ckpt"
    if ckpts:
        shutil.copy(ckpts[0], kept)

    restart = launch("restart.log")
    t0 = time.monotonic()
    api_s = None
    try:
        while True:
            if restart.poll() is not None:
                raise SystemExit(f"the restarted fundwatch run exited {restart.returncode}: see {work / 'restart.log'}")
            h = health(port)
            if h is not None and api_s is None:
                api_s = time.monotonic() - t0
            p = (h or {}).get("pipeline") or {}
            if p.get("caught_up"):
                caught_up_s = time.monotonic() - t0
                inputs_after = int(p["stats"]["inputs"])
                break
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit("the restarted run did not catch up in time")
            time.sleep(0.05)
    finally:
        restart.send_signal(signal.SIGTERM)
        try:
            restart.wait(timeout=30)
        except subprocess.TimeoutExpired:
            restart.kill()
            restart.wait()
    row: dict[str, Any] = {"interval_s": interval, "records": total, "killed_after_s": round(ran_s, 1),
                           "inputs_at_kill": inputs_at_kill, "restart_to_api_s": round(api_s or 0.0, 1),
                           "restart_to_caught_up_s": round(caught_up_s, 1),
                           "reread": inputs_after - (total - inputs_at_kill), "checkpoint_bytes": None,
                           "checkpoint_save_s": None, "checkpoint_load_s": None}
    if kept.exists():
        load_checkpoint(kept)  # once untimed: the first load imports the detectors' libraries
        t = time.perf_counter()
        cp = load_checkpoint(kept)
        row["checkpoint_load_s"] = round(time.perf_counter() - t, 2)
        assert cp is not None
        t = time.perf_counter()
        row["checkpoint_bytes"] = save_checkpoint(work / "again.ckpt", cp)
        row["checkpoint_save_s"] = round(time.perf_counter() - t, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--platforms", type=int, default=480)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--intervals", nargs="+", default=["5", "15", "60", "none"])
    ap.add_argument("--kill-at", type=float, default=0.6, help="fraction of the input read when the kill comes")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    bootstrap = args.bootstrap or bootstrap_from_ops()
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        world = tmp / "world"
        write_world(simulate(args.platforms, args.days, args.seed), world)
        prefix, total = publish(world, bootstrap)
        print(f"published {total:,} records to {prefix}*", file=sys.stderr, flush=True)
        rows = []
        for interval in args.intervals:
            rows.append(one_interval(interval, prefix, total, bootstrap, tmp, args.kill_at, args.timeout))
            print(f"interval {interval}: {rows[-1]}", file=sys.stderr, flush=True)
    cols = ["interval_s", "killed_after_s", "inputs_at_kill", "reread", "restart_to_api_s", "restart_to_caught_up_s",
            "checkpoint_bytes", "checkpoint_save_s", "checkpoint_load_s"]
    print(f"world: {args.platforms} platforms, {args.days} days, seed {args.seed}, {rows[0]['records']:,} records; "
          f"kill -9 at {args.kill_at:.0%} of the input")
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{'-' if r[c] is None else r[c]:>14}" for c in cols))
    print(json.dumps({"world": {"platforms": args.platforms, "days": args.days, "seed": args.seed},
                      "kill_at": args.kill_at, "rows": rows, "seconds": round(time.monotonic() - t_all)}))


if __name__ == "__main__":
    main()
