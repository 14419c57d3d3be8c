"""One writer process for tests/test_store_concurrency.py: a worker of its own, with its own connection,
publishing the same alerts as its siblings and appending to the audit log as fast as it can.

    python -m tests.store_writer TARGET NAME ROUNDS GO_FILE

Prints "ready" once its store is open and migrated, waits for GO_FILE to exist (so every writer starts
at once), then writes and prints "done".
"""
from __future__ import annotations

import os
import sys
import time

from service.store import Store
from tests.test_delivery import alert


def main(target: str, name: str, rounds: int, go_file: str) -> int:
    store = Store(target)
    store.conn  # migrate now: the siblings race for it too
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    for i in range(rounds):
        # every writer opens the same alert: exactly one "opened" event may result
        store.publish([], [alert(i, "320703", severity="MEDIUM")], final=False)
        store.audit(name, "concurrency.write", f"round:{i}", {"writer": name})
        if i % 5 == 0:  # and escalates it: exactly one "escalated" event
            store.publish([], [{**alert(i, "320703", severity="CRITICAL"), "change": "escalated",
                                "last_seen": alert(i, "320703")["last_seen"] + 1}], final=False)
        if i % 7 == 0:
            store.add_outcome(f"P{i:04d}", "RECTIFYING", 1_470_000_000_000, "test", None, name)
    store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
