"""Real processes and receivers for delivery tests: `fundwatch serve`/`run` as subprocesses, webhook
receivers as HTTP servers on 127.0.0.1 that check signatures the way the README tells receivers to."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service.delivery import SignatureError, verify_signature

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(tmp: Path, db: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "FUNDWATCH_DB_PATH": db, "FUNDWATCH_SECRET_KEY_FILE": str(tmp / "secret.key"),
           "FUNDWATCH_DELIVERY_POLL_SECONDS": "0.05", "FUNDWATCH_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
           "FUNDWATCH_WEBHOOK_BACKOFF_MAX_SECONDS": "0.2", "FUNDWATCH_WEBHOOK_TIMEOUT_SECONDS": "1",
           "FUNDWATCH_WEBHOOK_ALLOW_LOOPBACK": "true"}
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], port: int, timeout_s: float = 60,
          log: Path | None = None) -> subprocess.Popen[str]:
    """Start `python -m service.cli ARGS` and wait until /healthz answers. With `log`, its output goes to that
    file (a long run with the broker away logs more than a pipe holds, and a full pipe blocks the service)."""
    out: Any = subprocess.PIPE if log is None else open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("service did not answer /healthz")


def stop(proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Receiver:
    """A webhook receiver: verifies every POST; fails the first `fail_first` attempts of each event on
    purpose (HTTP 500), optionally sleeps first (a slow receiver)."""

    def __init__(self, secret: str = "", *, fail_first: int = 0, delay_s: float = 0.0, port: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.attempts: dict[int, int] = {}
        self.delivered: list[dict[str, Any]] = []  # events accepted, in arrival order, with arrival time
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                try:
                    verify_signature(receiver.secret, self.headers, body)
                except SignatureError as exc:
                    with receiver.lock:
                        receiver.rejected.append(str(exc))
                    self.send_response(401)
                    self.end_headers()
                    return
                event = json.loads(body)
                with receiver.lock:
                    n = receiver.attempts[event["id"]] = receiver.attempts.get(event["id"], 0) + 1
                    ok = n > receiver.fail_first
                    if ok:
                        receiver.delivered.append({**event, "_received": time.time(),
                                                   "_event_header": self.headers.get("X-Fundwatch-Event")})
                self.send_response(200 if ok else 500)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[int]:
        with self.lock:
            return [e["id"] for e in self.delivered]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(pred: Any, timeout_s: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
