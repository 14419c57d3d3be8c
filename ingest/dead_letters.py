"""Dead letters: every input that cannot be used is kept, with its reason and its position.

The sink has a ratio cap: when more than `max_ratio` of the inputs seen are dead (after
`min_seen` inputs), something is wrong upstream (a producer on another schema, a wrong
topic) and the pipeline stops rather than quietly dead-lettering a whole stream.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from ingest.decode import DecodeError

__all__ = ["DeadLetterSink", "DeadLetterRatioExceeded", "DeadLetterPolicy", "FileDeadLetters",
           "KafkaDeadLetters", "MemoryDeadLetters", "dead_letter_record"]

log = logging.getLogger(__name__)


class DeadLetterRatioExceeded(RuntimeError):
    """Too large a share of the input is dead: stop and let an operator look."""


def dead_letter_record(err: DecodeError) -> dict[str, Any]:
    m = err.source
    return {"stage": err.stage, "reason": err.reason, "position": m.position(), "topic": m.topic,
            "partition": m.partition, "offset": m.offset, "expected": m.expected,
            "key": base64.b64encode(m.key).decode() if m.key is not None else None,
            "value": base64.b64encode(m.value).decode() if m.value is not None else None,
            "row": m.row, "dead_at": int(time.time() * 1000)}


class DeadLetterSink(Protocol):
    def put(self, err: DecodeError) -> None: ...

    def flush(self) -> None: ...


class DeadLetterPolicy:
    def __init__(self, max_ratio: float = 0.05, min_seen: int = 1000) -> None:
        self.max_ratio = max_ratio
        self.min_seen = min_seen
        self.seen = 0
        self.dead = 0

    def saw(self, n: int = 1) -> None:
        self.seen += n

    def died(self) -> None:
        self.dead += 1
        if self.seen >= self.min_seen and self.dead > self.max_ratio * self.seen:
            raise DeadLetterRatioExceeded(
                f"{self.dead} of {self.seen} inputs dead-lettered (cap {self.max_ratio:.1%}); stopping")


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.items: list[DecodeError] = []

    def put(self, err: DecodeError) -> None:
        self.items.append(err)

    def flush(self) -> None:
        pass


class FileDeadLetters:
    """JSON lines, one dead input per line, appended."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: Any = None
        self.count = 0

    def put(self, err: DecodeError) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(dead_letter_record(err), ensure_ascii=False) + "\n")
        self.count += 1
        log.warning("dead letter: %s", err)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class KafkaDeadLetters:
    """The original bytes on a dead-letter topic, reason and position in headers (and a JSON copy if no bytes)."""

    def __init__(self, producer: Any, topic: str, *, bootstrap: str | None = None) -> None:
        self.producer = producer
        self.topic = topic
        self.bootstrap = bootstrap
        self.count = 0
        self._ends: dict[int, int] = {}
        self._already: set[tuple[str, str, str]] = set()  # dead-lettered after the checkpoint, before a crash
        from ingest.sources import BrokerCalls

        self.calls = BrokerCalls(7.0)  # a flush is bounded at 5 s

    def failing_for(self) -> float | None:
        return self.calls.failing_for()

    def checkpoint_state(self) -> dict[str, Any]:
        return {"ends": dict(self._ends)}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Read back what a crashed run dead-lettered after its checkpoint (no checkpoint: everything), so
        each bad record stays there once."""
        from ingest.kafka_io import read_headers_after

        state = state or {"ends": {}}
        self._ends = {int(p): int(o) for p, o in state.get("ends", {}).items()}
        for headers in read_headers_after(self.bootstrap, self.topic, self._ends):
            h = {k: v.decode("utf-8", "replace") for k, v in headers}
            self._already.add((h.get("source_topic", ""), h.get("source_partition", ""), h.get("source_offset", "")))

    def _sent(self, meta: Any) -> None:
        if meta.offset + 1 > self._ends.get(meta.partition, 0):
            self._ends[meta.partition] = meta.offset + 1

    def put(self, err: DecodeError) -> None:
        m = err.source
        if (m.topic, str(m.partition), str(m.offset)) in self._already:
            return
        headers = [("reason", err.reason.encode()), ("stage", err.stage.encode()),
                   ("source_topic", m.topic.encode()), ("source_partition", str(m.partition).encode()),
                   ("source_offset", str(m.offset).encode()), ("expected", m.expected.encode())]
        value = m.value if m.value is not None else json.dumps(dead_letter_record(err), ensure_ascii=False).encode()
        with self.calls.call(answers=False):
            self.producer.send(self.topic, value=value, key=m.key, headers=headers).add_callback(self._sent)
        self.count += 1
        log.warning("dead letter: %s", err)

    def flush(self) -> None:
        with self.calls.call(answers=True):
            self.producer.flush(timeout=5.0)
