"""Where inputs come from: a Kafka consumer group, or Avro container files (replay).

Both hand the pipeline lists of RawMessage and take back the positions that are safe to
commit, so `run` and `replay` share everything after the source. Only ingest/ imports kafka.
"""
from __future__ import annotations

import heapq
import json
from datetime import datetime, timedelta, timezone
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import fastavro

from ingest.decode import RawMessage
from schemas import INPUT_RECORDS, writer_schema

__all__ = ["Source", "FileSource", "KafkaSource", "FILES", "time_of", "transient", "REGISTRY_RECORDS", "BrokerCalls"]

log = logging.getLogger(__name__)
# The registry: every worker needs every platform and account (a transaction names accounts that other workers'
# partitions register), and every platform's disclosures (rules and features compare a platform with its peers'
# disclosed yields and complaints, and silence is measured against the disclosure feed's own clock); so these
# topics are read whole by each worker, outside the group (Kafka Streams' global table). They are small: a
# platform discloses monthly. The money topics, keyed by platform, are shared out by the group.
REGISTRY_RECORDS = ("Platform", "Account", "Disclosure")
REGISTRY_POLL_MS = 10  # the registry is polled first, briefly: a new account usually precedes its money (one
# broker round trip; a transaction whose account comes a turn later waits for it, it is not refused)
REGISTRY_CATCH_UP_POLL_MS = 5  # ... more briefly while the money comes in full batches (a catch-up)
COMMIT_RETRY_S = 5.0  # with the broker not answering, a commit is tried at most this often (the loop keeps turning)
BROKER_CALL_TIMEOUT_MS = 3_000  # a broker that is gone makes a call fail (and be retried), never hang a shutdown

# record name -> its container file in a replay directory. A record's data may also be split into parts named
# <stem>-<anything>.avro (transactions-2016-01.avro, transactions-part-0003.avro), read together in event time.
FILES = {"Platform": "platforms.avro", "Account": "accounts.avro", "Listing": "listings.avro",
         "Transaction": "transactions.avro", "Disclosure": "disclosures.avro", "Tip": "tips.avro",
         "Outcome": "outcomes.avro"}
_PRIORITY = {n: i for i, n in enumerate(INPUT_RECORDS)}


# timestamp fields per record; the first one orders a replay
_TIME_FIELDS = {"Platform": ("updated_at", "launched_at"), "Account": ("opened_at",), "Listing": ("listed_at",),
                "Transaction": ("ts",), "Disclosure": ("period_end",), "Tip": ("received_at",),
                "Outcome": ("decided_at",)}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def millis(row: dict[str, Any], name: str) -> dict[str, Any]:
    """Container-file readers hand timestamp-millis back as datetimes; fundwatch keeps epoch ms."""
    for f in _TIME_FIELDS[name]:
        v = row.get(f)
        if isinstance(v, datetime):
            row[f] = (v - _EPOCH) // timedelta(milliseconds=1)
    return row


def time_of(name: str, row: dict[str, Any]) -> int:
    v = row.get(_TIME_FIELDS[name][0])
    return int(v) if isinstance(v, int) else 0


class Source(Protocol):
    def poll(self) -> list[RawMessage] | None:
        """The next batch; [] when nothing is there now; None when a finite source is exhausted."""

    def commit(self, offsets: dict[tuple[str, int], int]) -> None: ...

    def caught_up(self) -> bool: ...

    def close(self) -> None: ...


class FileSource:
    """Avro object container files in one directory, merged in event time (registry before money at equal times).

    Any subset of the files in FILES may be present, each whole or in <stem>-*.avro parts. Each file
    is read lazily; a file that is not in time order is sorted in memory (and said so), so replays
    stay deterministic. A file written with another version of a record's schema is resolved to
    fundwatch's reader schema by Avro's rules.
    """

    def __init__(self, directory: str | os.PathLike[str], batch_size: int = 5000) -> None:
        self.directory = Path(directory)
        self.batch_size = batch_size
        self._it: Iterator[RawMessage] | None = None

    def files(self) -> dict[str, list[Path]]:
        """Record name -> its files here: FILES[name] and any <stem>-*.avro parts, in name order. Other .avro
        files are named in a warning and left alone (a misspelt name must not pass for an empty input)."""
        out: dict[str, list[Path]] = {}
        taken: set[Path] = set()
        for name, fname in FILES.items():
            stem = fname[:-len(".avro")]
            paths = sorted({*self.directory.glob(fname), *self.directory.glob(f"{stem}-*.avro")})
            if paths:
                out[name] = paths
                taken.update(paths)
        ignored = sorted(p.name for p in self.directory.glob("*.avro") if p not in taken)
        if ignored:
            log.warning("%s: ignoring %s (not a replay file name: %s, or <stem>-*.avro parts)", self.directory,
                        ", ".join(ignored), ", ".join(FILES.values()))
        return out

    def unreadable(self) -> list[str]:
        """Files here whose Avro header cannot be read (not a container file, or a schema naming types it never
        defines), each with the reason: said before a replay starts, not as a traceback halfway through it."""
        out = []
        for paths in self.files().values():
            for path in paths:
                try:
                    with open(path, "rb") as fh:
                        fastavro.reader(fh)
                except Exception as exc:  # fastavro raises ValueError, SchemaParseException, UnknownType...
                    out.append(f"{path}: not a readable Avro container file ({type(exc).__name__}: {exc})")
        return out

    @staticmethod
    def reader_schema(name: str, path: Path) -> Any:
        """None when the file's writer schema is fundwatch's own (read as is, the fast path); else fundwatch's
        reader schema, to which fastavro resolves the file's writer schema by Avro's rules (a bank's newer or
        older version: added fields dropped, missing ones defaulted, int->long, float->double)."""
        with open(path, "rb") as fh:
            header = fastavro.reader(fh).metadata.get("avro.schema", "null")
        try:
            s = writer_schema(json.loads(header), str(path))
        except ValueError as exc:
            log.warning("%s; its rows will be dead letters", exc)
            return None
        if s.name != name:
            log.warning("%s holds %s records, not %s; its rows will be dead letters", path, s.name, name)
            return None
        return None if s.writer is None else s.reader

    def _read(self, name: str, path: Path, part: int = 0) -> Iterator[tuple[int, int, int, int, RawMessage]]:
        reader_schema = self.reader_schema(name, path)
        with open(path, "rb") as fh:
            for i, raw in enumerate(fastavro.reader(fh, reader_schema=reader_schema)):
                row = millis(raw, name)  # type: ignore[arg-type]
                yield time_of(name, row), _PRIORITY[name], part, i, RawMessage(str(path), -1, i, name, row=row)

    def _rows(self, name: str, path: Path, part: int = 0) -> Iterator[tuple[int, int, int, int, RawMessage]]:
        """Stream the file when it is in time order (checked in a first pass); else sort it in memory."""
        last = None
        reader_schema = self.reader_schema(name, path)
        with open(path, "rb") as fh:
            for raw in fastavro.reader(fh, reader_schema=reader_schema):
                t = time_of(name, millis(raw, name))  # type: ignore[arg-type]
                if last is not None and t < last:
                    log.warning("%s is not in time order; sorting it in memory", path)
                    return iter(sorted(self._read(name, path, part), key=lambda x: (x[0], x[3])))
                last = t
        return self._read(name, path, part)

    def _merged(self) -> Iterator[RawMessage]:
        streams = [self._rows(n, p, i) for n, paths in self.files().items() for i, p in enumerate(paths)]
        for _, _, _, _, msg in heapq.merge(*streams, key=lambda x: (x[0], x[1], x[2], x[3])):
            yield msg

    def poll(self) -> list[RawMessage] | None:
        if self._it is None:
            self._it = self._merged()
        batch = []
        for msg in self._it:
            batch.append(msg)
            if len(batch) >= self.batch_size:
                break
        return batch or None

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        pass  # a replay starts from the beginning every time

    def caught_up(self) -> bool:
        return False

    def close(self) -> None:
        self._it = None


class BrokerCalls:
    """How long the broker has not answered, as one client of it sees it, for health: since the first of the
    current run of failed calls, or for as long as a call has been held beyond `bound_s` (kafka-python's poll
    has no timeout while it looks for a coordinator; a producer's send blocks up to `max_block_ms`)."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.since: float | None = None  # when the call in progress began
        self.failing_since: float | None = None

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def answered(self) -> None:
        self.failing_since = None

    @contextmanager
    def call(self, *, answers: bool = False) -> Iterator[None]:
        """Around a broker call; a failure starts the silence, and with `answers` (a flush, not a send: a send
        only buffers) its return ends it. Calls nest: the outermost one's start counts."""
        outer = self.since
        self.since = outer if outer is not None else time.monotonic()
        try:
            yield
        except Exception:
            self.failed()
            raise
        else:
            if answers:
                self.answered()
        finally:
            self.since = outer

    def failing_for(self) -> float | None:
        now = time.monotonic()
        spans = [now - self.failing_since] if self.failing_since is not None else []
        since = self.since
        if since is not None and now - since > self.bound_s:
            spans.append(now - since)
        return max(spans) if spans else None


class KafkaSource:
    """A kafka-python consumer in a consumer group for the money topics, and a second consumer outside the group
    that reads every partition of the registry topics (`registry`); offsets are committed only when the pipeline
    says so, and only the group's: the registry is read from the checkpoint's positions or from the beginning."""

    def __init__(self, bootstrap: str, group_id: str, topics: dict[str, str], *, session_timeout_ms: int = 10_000,
                 heartbeat_interval_ms: int = 1_000, max_poll_records: int = 5_000, poll_timeout_ms: int = 500,
                 client_id: str = "fundwatch", instance_id: str | None = None,
                 registry: tuple[str, ...] = REGISTRY_RECORDS) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics  # topic -> record name
        self.registry_topics = {t for t, name in topics.items() if name in registry}
        if self.registry_topics == set(topics):  # a registry alone (a tool reading accounts): the group reads it
            self.registry_topics = set()
        self._registry: Any = None
        self._offsets: Any = None  # asks end offsets only (`offsets_client`)
        self._full = False  # the last poll of the money came back (half) full: catching up
        self._money_partitions: int | None = None
        self._partition_of: dict[str, int] = {}
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        self.client_id = client_id
        self.instance_id = instance_id
        self._consumer: Any = None
        self._making = threading.RLock()  # the consumer is made once, whichever thread asks first
        self.transient_errors = 0
        self.calls = BrokerCalls(poll_timeout_ms / 1000 + 2.0)  # a poll held past its own timeout is silence
        self._failures = 0
        self._start: dict[tuple[str, int], int] | None = None
        self._seek = False
        self._positioned: set[Any] = set()  # assigned partitions already put where the state says
        self._ends: dict[Any, int] = {}
        self._ends_at = 0.0
        self._commit_tried = 0.0
        self._covered: set[tuple[str, int]] | None = None
        self.rebuild_needed = False
        self._next: dict[tuple[str, int], int] = {}  # partition -> the offset after the last record handed over
        self.on_revoke: Callable[[], None] | None = None  # the pipeline flushes its outputs there

    def start_from(self, positions: dict[tuple[str, int], int] | None,
                   covered: Iterable[tuple[str, int]] | None = None) -> None:
        """Where to read from on assignment: a checkpoint's positions, or None for the beginning of every topic.
        `covered`: the group's partitions whose records the checkpoint's state holds (default: those it has
        positions for). Not calling it keeps the group's committed offsets (a stateless consumer)."""
        self._start = positions
        self._seek = True
        if positions is None:
            self._covered = None
        else:
            keys = covered if covered is not None else positions
            self._covered = {(t, int(p)) for t, p in keys if t not in self.registry_topics}

    @property
    def covered(self) -> set[tuple[str, int]] | None:
        """The group's partitions whose records the pipeline's state holds (None: none assigned yet)."""
        return None if self._covered is None else set(self._covered)

    def _cover(self, assigned: Iterable[Any]) -> None:
        """A new assignment: partitions gained that the state does not hold mean the state must be rebuilt
        (`rebuild_needed`; see `rewind`); partitions lost are simply no longer held."""
        now = {(tp.topic, tp.partition) for tp in assigned}
        if not now or not self._seek:
            return
        if self._covered is None and self._start is None:
            # a fresh start: the partitions' earlier owners may have published for them since this worker read
            # its output topics back at start; read them back now (a rebuild of an almost empty state)
            self.rebuild_needed = True
        elif self._covered is not None and not now <= self._covered:
            gained = sorted(now - self._covered)
            log.warning("assigned %d partitions whose records this worker's state does not hold (%s): the state "
                        "is rebuilt from the beginning of its partitions", len(gained),
                        ", ".join(f"{t}[{p}]" for t, p in gained[:6]))
            self.rebuild_needed = True
        self._covered = now

    def rewind(self) -> None:
        """Read every assigned partition and the whole registry again from the beginning (a rebuild)."""
        self.rebuild_needed = False
        self._start = None
        self._next = {}
        assigned = list(self.consumer.assignment())
        for tp in assigned:
            self.consumer.seek_to_beginning(tp)
        self._positioned = set(assigned)
        if self._registry is not None:
            for tp in self._registry.assignment():
                self._registry.seek_to_beginning(tp)

    @property
    def consumer(self) -> Any:
        """The group's consumer, made on first use. Made under a lock: two threads asking at once (the loop and
        a health or test probe) made two consumers in one group, and the first one's rebalance listener then
        positioned partitions on the second (CI: 'Unassigned partition' raised in the listener, the loop dead)."""
        if self._consumer is not None:
            return self._consumer
        with self._making:
            if self._consumer is not None:
                return self._consumer
            from kafka import KafkaConsumer

            from kafka import ConsumerRebalanceListener

            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group_id,
                client_id=self.client_id, enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=self.session_timeout_ms, heartbeat_interval_ms=self.heartbeat_interval_ms,
                max_poll_records=self.max_poll_records, max_poll_interval_ms=300_000,
                group_instance_id=self.instance_id)
            source = self

            class Reposition(ConsumerRebalanceListener):
                def on_partitions_revoked(self, revoked: Any) -> None:
                    source._positioned.difference_update(revoked)
                    if revoked and source.on_revoke is not None:  # before the next owner reads what we sent
                        try:
                            source.on_revoke()
                        except Exception as exc:
                            log.warning("flush before giving partitions up failed: %s: %s", type(exc).__name__, exc)

                def on_partitions_assigned(self, assigned: Any) -> None:
                    # runs on kafka-python's IO thread: an exception here kills the caller's poll, so what
                    # cannot be positioned now is left to the poll (it positions every unpositioned partition)
                    try:
                        source._cover(assigned)
                        source._position(assigned, consumer)
                    except Exception as exc:
                        log.warning("positioning assigned partitions failed, left to the next poll: %s: %s",
                                    type(exc).__name__, exc)

            consumer.subscribe(sorted(set(self.topics) - self.registry_topics), listener=Reposition())
            self._consumer = consumer
            return consumer

    @property
    def registry(self) -> Any:
        """The registry reader: every partition of the registry topics assigned by hand, no group, no commits."""
        if self._registry is not None or not self.registry_topics:
            return self._registry
        with self._making:
            if self._registry is not None:
                return self._registry
            from kafka import KafkaConsumer
            from kafka.structs import TopicPartition

            reader = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, client_id=self.client_id + "-registry",
                                   enable_auto_commit=False, auto_offset_reset="earliest",
                                   max_poll_records=self.max_poll_records)
            parts = []
            for topic in sorted(self.registry_topics):
                found = reader.partitions_for_topic(topic)
                if not found:
                    reader.close()
                    raise _registry_unknown(topic)
                parts += [TopicPartition(topic, p) for p in sorted(found)]
            reader.assign(parts)
            for tp in parts:
                pos = (self._start or {}).get((tp.topic, tp.partition))
                if pos is None:
                    reader.seek_to_beginning(tp)
                else:
                    reader.seek(tp, pos)
            self._registry = reader
        return self._registry

    def owned(self, platform_ids: Iterable[str]) -> list[str]:
        """The platforms whose money this worker reads: the money topics are keyed by platform and have one
        partition count, and the group's range assignor gives one worker the same partition of each, so the
        transactions topic's partition for the key (the producers' murmur2, as Java's) says who."""
        from kafka.partitioner import murmur2

        held = {tp.partition for tp in self.consumer.assignment() if self.topics.get(tp.topic) == "Transaction"}
        if not held:
            return []
        n = self._money_partitions
        if n is None:
            topic = next(t for t, name in self.topics.items() if name == "Transaction")
            with self.calls.call():  # a metadata fetch when not cached, which waits on the broker
                n = self._money_partitions = len(self.consumer.partitions_for_topic(topic) or ()) or None
            if n is None:
                return []
        cache = self._partition_of  # a platform's partition never changes: hashed once (bounded by the registry)
        out = []
        for pid in platform_ids:
            part = cache.get(pid)
            if part is None:
                part = cache[pid] = (murmur2(pid.encode()) & 0x7FFFFFFF) % n
            if part in held:
                out.append(pid)
        return out

    def _owner(self, topic: str) -> Any:
        return self.registry if topic in self.registry_topics else self.consumer

    def _position(self, partitions: Any, consumer: Any = None) -> None:
        """Put newly assigned partitions where the state says: after the last record handed over when the state
        holds it (a rebalance gives back a partition this worker kept: kafka-python would restart it at the
        committed offset, behind what the pipeline already holds), else the checkpoint's position, else the
        beginning."""
        if not self._seek:
            return
        consumer = consumer if consumer is not None else self.consumer
        assigned = consumer.assignment()
        for tp in partitions:
            if tp not in assigned:  # taken away again since it was handed over: positioned if it comes back
                continue
            key = (tp.topic, tp.partition)
            pos = self._next.get(key) if key in (self._covered or ()) else None
            if pos is None:
                pos = (self._start or {}).get(key)
            if pos is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, pos)
            self._positioned.add(tp)

    def poll(self) -> list[RawMessage] | None:
        try:
            with self.calls.call():
                # the registry once the group has handed out the money: a fresh start rebuilds at its first
                # assignment, and what was read before it would be read again
                registry = self.registry if self._consumer is not None and self._consumer.assignment() else None
                # a registry read to its end makes its poll wait out the timeout: every turn of a catch-up
                # waited 50 ms there, a tenth of it; the money waits behind it anyway then
                wait = REGISTRY_CATCH_UP_POLL_MS if self._full else REGISTRY_POLL_MS
                first = dict(registry.poll(timeout_ms=wait)) if registry is not None else {}
                batches = self.consumer.poll(timeout_ms=0 if first else self.poll_timeout_ms)
                self._full = sum(map(len, batches.values())) >= self.max_poll_records // 2
        except Exception as exc:
            if not transient(exc):
                raise
            self._transient(exc, "poll")
            return []
        self._failures = 0
        if batches or first:
            self.calls.answered()  # records came back (an empty poll says nothing: it returns with the broker gone)
        if self._seek:
            # a static member rejoining gets its partitions back without the rebalance callback, and the
            # fetch starts at the committed offsets, which may be ahead of the checkpoint: records fetched
            # for a partition not yet positioned are dropped, and it is positioned before the next fetch
            self._cover(self.consumer.assignment())
            fresh = [tp for tp in self.consumer.assignment() if tp not in self._positioned]
            if fresh:
                self._position(fresh)
                batches = {tp: recs for tp, recs in batches.items() if tp not in fresh}
        out = []
        for tp, records in sorted(first.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
            name = self.topics[tp.topic]
            for r in records:
                out.append(RawMessage(tp.topic, tp.partition, r.offset, name, value=r.value, key=r.key))
        for tp, records in sorted(batches.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
            name = self.topics[tp.topic]
            for r in records:
                out.append(RawMessage(tp.topic, tp.partition, r.offset, name, value=r.value, key=r.key))
            if records:
                self._next[(tp.topic, tp.partition)] = records[-1].offset + 1
        return out

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit for lag monitoring; a rebalance or a broker away makes this one fail, the next one catches up."""
        if not offsets:
            return
        from kafka.structs import OffsetAndMetadata, TopicPartition

        assigned = self.consumer.assignment()
        points = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        points = {tp: o for tp, o in points.items() if tp in assigned}  # a revoked partition is not ours to commit
        if not points:
            return
        now = time.monotonic()
        if self.calls.failing_since is not None and now - self._commit_tried < COMMIT_RETRY_S:
            return  # the broker is not answering: kafka-python holds a commit past its timeout; try again later
        self._commit_tried = now
        try:
            with self.calls.call(answers=True):
                self.consumer.commit(points, timeout_ms=BROKER_CALL_TIMEOUT_MS)
        except Exception as exc:
            if not transient(exc):
                raise
            self._transient(exc, "commit", wait=False)  # the next turn of the loop commits again

    @property
    def failing_since(self) -> float | None:
        return self.calls.failing_since

    @property
    def behind_feed(self) -> bool:
        """The last poll of the money came back (half) full: there is more waiting than one turn reads."""
        return self._full

    def failing_for(self) -> float | None:
        """Seconds the broker has not answered (None: it answers); see BrokerCalls."""
        return self.calls.failing_for()

    def _transient(self, exc: Exception, what: str, *, wait: bool = True) -> None:
        self.calls.failed()  # health: how long the broker has not answered
        self._failures += 1
        self.transient_errors += 1
        delay = min(2.0, 0.1 * 2 ** min(self._failures, 6)) if wait else 0.0
        log.warning("Kafka %s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
        if delay:
            time.sleep(delay)

    def caught_up(self) -> bool:
        """True when every assigned partition has been read to its end."""
        lag = self.lag()
        return lag == 0

    def _assigned(self) -> list[tuple[Any, Any]]:
        """(consumer, partition) for every partition this worker reads: the group's share and the whole registry."""
        out = [(self.consumer, tp) for tp in self.consumer.assignment()]
        if out and self.registry_topics:  # the registry counts once the group has handed out the money
            try:
                registry = self.registry
            except Exception as exc:
                if not transient(exc):
                    raise
                return []  # the registry's partitions not known yet: nothing is caught up
            out += [(registry, tp) for tp in registry.assignment()]
        return out

    def _end_offsets(self, assigned: list[tuple[Any, Any]]) -> dict[Any, int]:
        """The ends of the partitions read. kafka-python 3.0 may hold this past its timeout with the broker gone
        (inside `calls`, health sees the silence), and may then fail with a KeyError for a partition whose
        answer never came: that is the broker not answering, retried like a timeout, not a crash."""
        from kafka.errors import KafkaTimeoutError

        with self.calls.call():
            try:
                ends: dict[Any, int] = self.offsets_client.end_offsets([tp for _, tp in assigned],
                                                                       timeout_ms=BROKER_CALL_TIMEOUT_MS)
            except KeyError as exc:
                raise KafkaTimeoutError(f"no end offset came back for {exc}") from exc
        return ends

    @property
    def offsets_client(self) -> Any:
        """A consumer of its own (no group, nothing assigned) that only asks the broker for end offsets. On the
        reading consumers' connections the question waited behind their fetch, which the broker holds up to
        `fetch_max_wait_ms` (500 ms) while a partition has nothing new: a broker processes one request at a
        time per connection. The watermark asks every turn, so that wait was a third of a catch-up."""
        if self._offsets is not None:
            return self._offsets
        with self._making:
            if self._offsets is None:
                from kafka import KafkaConsumer

                self._offsets = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                              client_id=self.client_id + "-offsets", enable_auto_commit=False)
        return self._offsets

    def behind(self) -> set[tuple[str, int]] | None:
        """Partitions read with records still to read (None: no assignment yet). End offsets are asked
        of the broker at most twice a second, and again when a partition reaches the ends last seen."""
        assigned = self._assigned()
        if not assigned:
            return None
        now = time.monotonic()
        try:
            with self.calls.call():
                positions = {tp: c.position(tp, timeout_ms=BROKER_CALL_TIMEOUT_MS) for c, tp in assigned}
            if now - self._ends_at > 0.5 or any(positions[tp] >= self._ends.get(tp, 0) for _, tp in assigned):
                if now - self._ends_at > 0.05:
                    self._ends = self._end_offsets(assigned)
                    self._ends_at = now
                    self.calls.answered()
        except Exception as exc:
            if not transient(exc):
                raise
            self.calls.failed()
            log.warning("Kafka positions unknown (%s: %s)", type(exc).__name__, exc)
            return {(tp.topic, tp.partition) for _, tp in assigned}
        return {(tp.topic, tp.partition) for _, tp in assigned if positions[tp] < self._ends.get(tp, 0)}

    def pause(self, partitions: set[tuple[str, int]]) -> None:
        """Stop fetching these (they run far ahead of the others' event time) until `resume`."""
        from kafka.structs import TopicPartition

        for t, p in partitions:
            self._owner(t).pause(TopicPartition(t, p))

    def resume(self, partitions: set[tuple[str, int]]) -> None:
        from kafka.structs import TopicPartition

        for t, p in partitions:
            self._owner(t).resume(TopicPartition(t, p))

    def lag(self) -> int | None:
        """Records between the read positions and the ends of the partitions read (None: not assigned yet)."""
        assigned = self._assigned()
        if not assigned:
            return None
        try:
            ends = self._end_offsets(assigned)
            with self.calls.call():
                lag = sum(max(0, ends.get(tp, 0) - c.position(tp, timeout_ms=BROKER_CALL_TIMEOUT_MS))
                          for c, tp in assigned)
            self.calls.answered()
            return lag
        except Exception as exc:
            if not transient(exc):
                raise
            self.calls.failed()  # health: the broker did not answer
            log.warning("Kafka lag unknown (%s: %s)", type(exc).__name__, exc)
            return None

    def close(self) -> None:
        for name in ("_consumer", "_registry", "_offsets"):
            c = getattr(self, name)
            if c is not None:
                try:
                    c.close(autocommit=False, timeout_ms=3_000)
                except Exception as exc:  # closing with the broker gone must not hold up a shutdown
                    log.warning("closing the consumer: %s: %s", type(exc).__name__, exc)
                setattr(self, name, None)


def _registry_unknown(topic: str) -> Exception:
    from kafka.errors import KafkaTimeoutError

    return KafkaTimeoutError(f"no partitions known for the registry topic {topic} yet")


def transient(exc: BaseException) -> bool:
    """Errors that a later attempt may not meet: rebalances, a moved coordinator, a broker restarting."""
    from kafka import errors

    if isinstance(exc, (errors.CommitFailedError, errors.RebalanceInProgressError, errors.NotCoordinatorError,
                        errors.CoordinatorNotAvailableError, errors.CoordinatorLoadInProgressError,
                        errors.BrokerNotAvailableError, errors.KafkaConnectionError, errors.KafkaTimeoutError,
                        errors.RequestTimedOutError, errors.NodeNotReadyError, errors.UnknownMemberIdError,
                        errors.IllegalGenerationError)):
        return True
    return isinstance(exc, errors.KafkaError) and bool(getattr(exc, "retriable", False))
