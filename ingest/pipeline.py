"""The one loop: poll -> decode -> graph.apply -> detect -> score -> publish -> commit.

Offsets are committed last, and only up to the first input not yet fully handled: a
transaction waiting for its account (topics interleave on Kafka) holds its partition's
commit point back until it is applied or dead-lettered. Scoring runs on an event-time
cadence (every `assess_every_ms` of the records' own time) and whenever the stream goes
idle, so a replay and a live run over the same records reach the same scores.
"""
from __future__ import annotations

import bisect
import contextlib
import copy
import gc
import heapq
import logging
import math
import operator
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from detectors.assess import Assessment, Assessor, Population, Statistical
from graph.ledger import Ledger
from ingest.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ingest.dead_letters import DeadLetterPolicy, DeadLetterRatioExceeded, DeadLetterSink
from ingest.decode import DecodeError, Envelope, RawMessage, TransientError, decode
from ingest.sources import Source
from ingest.validate import Gate, Limits, event_time
from schemas import INPUT_RECORDS
from schemas.records import DAY_MS, RECORD_TYPES, Account, Outcome, Platform, Tip, Transaction
from schemas.wire import Framing, SingleObjectFraming

__all__ = ["Pipeline", "Output", "RunStats", "fewer_collections"]

log = logging.getLogger(__name__)
INF = math.inf
LIVE_LAG_RECORDS = 5_000  # within this of the partitions' ends, a worker keeps up with the feed
_PRIORITY = {n: i for i, n in enumerate(INPUT_RECORDS)}  # registry before money at equal times, as a replay
_ORDER = {RECORD_TYPES[n]: i for n, i in _PRIORITY.items()}  # the same, by record class
_TIME = operator.itemgetter(0)
GC_YOUNG = 20_000  # container allocations between the collector's young passes while the loop runs (Python: 700)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's young threshold while the loop runs, and restore it after.

    Each record allocates a dozen small containers that die young (freed by reference counting, not by the
    collector). At Python's default threshold the collector runs every ~60 records, moves what is alive on,
    and soon walks the whole state (the graph's millions of containers) in full passes: a third of the
    per-record path (benchmarks/throughput.py). Cyclic garbage is still collected, in rarer passes."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_YOUNG), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


class GroupPopulation(Population, Protocol):
    """The population part shared by the workers of a group (service/population.py)."""

    def clock(self, now_ms: int) -> int: ...

    def lead(self, fit: Callable[..., dict[str, Statistical]], registered: Iterable[str]) -> bool: ...

    def restated(self, assessor: Assessor, latest: list[Assessment]) -> list[Assessment] | None: ...


class Output(Protocol):
    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None: ...

    def flush(self) -> None: ...


@dataclass
class RunStats:
    inputs: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    assessments: int = 0
    alerts: int = 0
    pending: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "applied": self.applied, "duplicates": self.duplicates, "dead": self.dead,
                "assessments": self.assessments, "alerts": self.alerts, "pending": self.pending,
                "seconds": round(time.monotonic() - self.started, 2)}


class Pipeline:
    def __init__(self, source: Source, ledger: Ledger, assessor: Assessor, outputs: list[Output],
                 dead_letters: DeadLetterSink, *, framing: Framing | None = None,
                 dead_letter_policy: DeadLetterPolicy | None = None, assess_every_ms: int = 7 * DAY_MS,
                 idle_assess_s: float = 2.0, max_pending: int = 500_000, checkpoint_path: str | None = None,
                 checkpoint_every_s: float = 60.0, pause_on_dead_letter_cap: bool = False,
                 limits: Limits | None = None, max_buffered: int = 300_000, idle_partition_s: float = 30.0,
                 population: GroupPopulation | None = None, live_rescore_s: float = 0.2) -> None:
        self.source = source
        self.ledger = ledger
        self.assessor = assessor
        self.outputs = outputs
        self.dead_letters = dead_letters
        self.framing = framing or SingleObjectFraming()
        self.policy = dead_letter_policy or DeadLetterPolicy()
        self.gate = Gate(limits) if limits else Gate()  # every record is checked here once (ingest/validate.py)
        self.assess_every_ms = assess_every_ms
        self.idle_assess_s = idle_assess_s
        self.max_pending = max_pending
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every_s = checkpoint_every_s
        self.population = population  # several workers: the population part is fitted by the group's leader
        self.live_rescore_s = live_rescore_s  # once caught up: platforms touched are rescored this often at most
        self._touched: set[str] = set()
        self._live = False
        self._keeping_up = 0
        self._rescore_due = 0.0
        self._population_at = 0.0
        self._pristine = (copy.deepcopy(ledger), copy.deepcopy(assessor))  # what a rebuild starts again from
        self.rebuilds = 0
        self.rebuild_started: float | None = None  # a rebuild under way (monotonic), for health and logs
        self.last_rebuild_s: float | None = None
        self._last_checkpoint = time.monotonic()
        self.stats = RunStats()
        self.latest: list[Assessment] = []
        self._pending: dict[str, deque[Envelope]] = {}  # platform -> transactions waiting, in arrival order
        self._done: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset fully handled
        self._next_assess_ms: int | None = None
        self._dirty = False
        # (event time, record order, arrival, record), sorted at each release (`_release_due`); appended to meanwhile
        self._buffer: list[tuple[int, int, int, Envelope]] = []
        self._unsorted = False
        self._held = _Held()  # offsets of the records in the buffer or waiting, per partition: the commit points
        self._seq = 0
        self._arrived: dict[tuple[str, int], float] = {}  # partition -> when it last delivered (monotonic)
        self._started = time.monotonic()
        self._paused: set[tuple[str, int]] = set()
        self.max_buffered = max_buffered
        self.idle_partition_s = idle_partition_s
        self._lock = threading.Lock()
        self.caught_up = False  # set when the source has been read to its end and assessed
        self.restored = False
        self.pause_on_dead_letter_cap = pause_on_dead_letter_cap
        self.paused: str | None = None  # why consumption stopped (the dead-letter cap), for health
        self.heartbeat = time.monotonic()  # the loop's last turn, for health
        self.stage = "starting"  # where the loop is, for health: where a stalled loop is held
        self.lag: int | None = None  # records behind the ends of the input partitions (Kafka), for health
        self._lag_at = 0.0
        if hasattr(source, "on_revoke"):  # partitions given up: what was published for them goes out first
            source.on_revoke = self._flush_outputs
        if checkpoint_path:
            self._restore(checkpoint_path)

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, *, stop: threading.Event | None = None, until_caught_up: bool = False,
            max_idle_s: float | None = None, max_inputs: int | None = None) -> RunStats:
        """Run until the source is exhausted (files), caught up (tests), stopped, idle too long, or `max_inputs` read."""
        with fewer_collections():
            return self._run(stop=stop, until_caught_up=until_caught_up, max_idle_s=max_idle_s, max_inputs=max_inputs)

    def _run(self, *, stop: threading.Event | None, until_caught_up: bool, max_idle_s: float | None,
             max_inputs: int | None) -> RunStats:
        idle_since: float | None = None
        interrupted = False
        try:
            while True:
                self.heartbeat = time.monotonic()
                if (stop is not None and stop.is_set()) or (max_inputs is not None and self.stats.inputs >= max_inputs):
                    interrupted = True
                    break
                if self.paused is not None:  # an operator must look; health says why
                    if stop is None:
                        break
                    stop.wait(0.5)
                    continue
                try:
                    self.stage = "poll"
                    batch = self.source.poll()                           # poll
                    if batch is None:
                        break
                    if getattr(self.source, "rebuild_needed", False):     # partitions whose state is elsewhere
                        self._rebuild()
                        continue
                    if max_inputs is not None:
                        batch = self._hold_back(batch, max_inputs - self.stats.inputs)
                    for msg in batch:
                        try:
                            item = decode(msg, self.framing)             # decode
                        except TransientError as exc:                    # registry unreachable: wait, same message
                            waited = self._decode_when_possible(msg, exc, stop)
                            if waited is None:
                                interrupted = True                       # stopped while waiting: not marked, read again
                                break
                            item = waited
                        self.stats.inputs += 1
                        self.policy.saw()
                        if isinstance(item, DecodeError):
                            self._dead(item)
                        else:
                            self._admit(item)                            # validate, then wait for its time
                        self._mark(msg.topic, msg.partition, msg.offset)
                    if interrupted:
                        break
                    self.stage = "apply and assess"
                    self._release_due(self._watermark())                     # graph.apply in event time; detect,
                    #                                                      score and publish at each boundary
                    if self._live and self._touched and time.monotonic() >= self._rescore_due:
                        self.stage = "live rescore"
                        self._rescore_touched()                          # live: what new records touched
                    if batch:
                        idle_since = None
                        self.caught_up = False
                    else:
                        idle_since = idle_since or time.monotonic()
                        self.stage = "idle: catching up and assessing"
                        if time.monotonic() - idle_since >= self.idle_assess_s:
                            if self._buffer and self.source.caught_up():
                                self._release_due(INF)  # all there is has been read: nothing older will come
                            if self._pending and self.source.caught_up():
                                self._expire_pending(force=True)  # all there is has been read: nothing more will come
                            if self.population is not None and not self._buffer and not self._pending:
                                self._join_group_clock()
                            if self._dirty:
                                self._assess(final=not self._pending)
                        if not self._dirty and not self._pending and not self._buffer and not self.caught_up:
                            self.caught_up = self.source.caught_up()
                            self._live = self._live or (self.caught_up and self.stats.applied > 0)
                            if self.caught_up and self.rebuild_started is not None:
                                self.last_rebuild_s = round(time.monotonic() - self.rebuild_started, 2)
                                self.rebuild_started = None
                                log.warning("state rebuilt from the beginning of this worker's partitions in %.1f s",
                                            self.last_rebuild_s)
                    if self.population is not None:
                        self.stage = "population part"
                        self._population_turn()
                except DeadLetterRatioExceeded as exc:
                    if not self.pause_on_dead_letter_cap:
                        raise
                    self.paused = str(exc)
                    log.error("pipeline paused: %s", exc)
                    continue
                self.stage = "commit"
                self.source.commit(self._commit_points())               # commit, last
                self.stage = "lag"
                self._measure_lag()
                if self.checkpoint_path and time.monotonic() - self._last_checkpoint >= self.checkpoint_every_s:
                    self.stage = "checkpoint"
                    self.save_checkpoint()
                if batch == [] and until_caught_up and not self._pending and not self._buffer and \
                        self.source.caught_up():
                    break
                if idle_since is not None and max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
            if interrupted:
                # a shutdown (or a test's crash): the state goes to the checkpoint as it is, and the next start
                # resumes from it; no last assessment (it would hold a SIGTERM up for a full scoring pass, and
                # an assessment no uninterrupted run makes would change what is alerted after the restart)
                if getattr(self.source, "failing_since", None) is None:  # a broker away: no commit to wait on
                    self.source.commit(self._commit_points())
                if self.checkpoint_path:
                    self.save_checkpoint()
                return self.stats
            self._release_due(INF)  # the source is exhausted: everything waiting for its time is due
            self._expire_pending(force=True)  # nothing more will come
            self._assess(final=True)
            self.source.commit(self._commit_points())
            if self.checkpoint_path:
                self.save_checkpoint()
        finally:
            flushes = [self.dead_letters.flush, *(out.flush for out in self.outputs),
                       getattr(self.population, "close", lambda: None)]  # the leader lease passes on at once
            for flush in flushes:
                try:
                    flush()
                except Exception as exc:  # a broker away at shutdown: said, not raised over the real cause
                    log.warning("flush at the end of the run failed: %s: %s", type(exc).__name__, exc)
        return self.stats

    def _measure_lag(self) -> None:
        """Records behind the ends of the input partitions, at most every few seconds (health reads it)."""
        lag = getattr(self.source, "lag", None)
        if lag is None or time.monotonic() - self._lag_at < 5.0:
            return
        self._lag_at = time.monotonic()
        self.lag = lag()
        # a feed that never pauses never lets the loop go idle: keeping within one batch of the ends over two
        # measurements (5 s apart) is caught up too, and live rescoring starts (not on a catch-up's short tail)
        near = self.lag is not None and self.lag <= LIVE_LAG_RECORDS and self.stats.applied > 0
        self._keeping_up = self._keeping_up + 1 if near else 0
        if self._keeping_up >= 2 and not self._live:
            self._live = True
            log.info("keeping up with the feed (%s records behind): platforms are rescored as records arrive",
                     self.lag)

    # ---- waiting out an unreachable schema registry -------------------------------------------------
    retry_first_s = 0.5  # then doubling, at most retry_max_s
    retry_max_s = 30.0

    def _decode_when_possible(self, msg: RawMessage, exc: TransientError,
                              stop: threading.Event | None) -> Envelope | DecodeError | None:
        """Decode `msg` again, with backoff, until its writer schema can be fetched. Consumption pauses meanwhile and
        nothing is dead-lettered (the bytes may be valid). None when stopped first: `msg` is not marked done."""
        delay = self.retry_first_s
        while True:
            log.warning("%s; consumption paused, retrying in %.1f s", exc, delay)
            if stop is not None:
                if stop.wait(delay):
                    return None
            else:
                time.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)
            try:
                item = decode(msg, self.framing)
            except TransientError as again:
                exc = again
                continue
            log.warning("%s: schema source answers again; consumption resumes", msg.position())
            return item

    # ---- event time: a watermark, records applied in its order, assessments at its boundaries -----------
    def _admit(self, env: Envelope) -> None:
        """Validate at the door, then hold the record until every input partition has passed its time."""
        reason = self.gate.check(env, self.ledger.now_ms)
        if reason:
            self._dead(DecodeError(env.source, reason, "validate"))
            return
        rec = env.record
        t = event_time(rec)
        if t is None:
            t = rec.received_at if isinstance(rec, Tip) else rec.decided_at if isinstance(rec, Outcome) \
                else self.ledger.now_ms
        self._seq += 1
        self._buffer.append((t, _ORDER.get(type(rec), 9), self._seq, env))
        self._unsorted = True
        self._held.hold(env.source)
        self._arrived[(env.source.topic, env.source.partition)] = time.monotonic()

    def _watermark(self) -> float:
        """The event time every input has reached: the minimum over the partitions that still have records
        to deliver of the newest time each has delivered (Flink's and Kafka Streams' watermark). A partition
        read to its end, or silent for `idle_partition_s`, holds nothing back; a source that hands records
        over in event-time order (files) or one record at a time (tests) has no watermark to wait for."""
        behind = getattr(self.source, "behind", None)
        if behind is None:
            return INF
        parts = behind()
        if parts is None:
            return -INF  # not assigned yet
        now, times = time.monotonic(), []
        for p in parts:
            t = self.gate.partitions.get(p)
            if now - self._arrived.get(p, self._started) > self.idle_partition_s:
                continue  # silent too long (a broker trouble, a paused fetch): it stops holding time back
            if t is None:
                return -INF  # behind, and nothing from it yet: its first record may be the oldest
            times.append(t)
        wm = float(min(times)) if times else INF
        self._backpressure(wm)
        return wm

    def _backpressure(self, wm: float) -> None:
        """Pause partitions running far ahead of the watermark while the buffer is full; resume them after."""
        pause, resume = getattr(self.source, "pause", None), getattr(self.source, "resume", None)
        if pause is None or resume is None:
            return
        if len(self._buffer) > self.max_buffered:
            ahead = {p for p, t in self.gate.partitions.items() if t > wm + DAY_MS} - self._paused
            if ahead:
                pause(ahead)
                self._paused |= ahead
        elif self._paused and len(self._buffer) < self.max_buffered // 2:
            resume(self._paused)
            self._paused = set()

    def _release_due(self, watermark: float) -> None:
        """Apply what the watermark has passed, oldest first; before the first record past an assessment
        boundary, assess as of the boundary. The moments and the states assessed therefore depend on the
        records alone, not on how they were batched, interleaved or interrupted.

        The buffer is a list sorted here, once per turn (the new records are nearly in order: Timsort merges
        them in about linear time), and the records due are its prefix: a heap paid a push and a pop, each
        a Python-level sift, per record. The order is the heap's: (time, record order, arrival)."""
        buf = self._buffer
        if self._unsorted:
            buf.sort()
            self._unsorted = False
        due = len(buf) if watermark == INF else bisect.bisect_left(buf, watermark, key=_TIME)
        i = 0
        try:
            while i < due:
                t, _, _, env = buf[i]
                if self._next_assess_ms is None:
                    self._next_assess_ms = (t // DAY_MS + 1) * DAY_MS + self.assess_every_ms - DAY_MS
                elif t >= self._next_assess_ms:
                    boundary = self._next_assess_ms
                    while boundary + self.assess_every_ms <= t:
                        boundary += self.assess_every_ms
                    # as of the instant before the boundary, not of the last record before it: the moment then
                    # depends on the boundary alone, the same for every worker of a group and for a replay (a
                    # label or a tip moves no clock: it is assessed where the ledger stands)
                    if event_time(env.record) is not None:
                        self.ledger.advance(boundary - 1)
                        self._dirty = True  # time moved: windows and silences moved with it, nothing applied or not
                    self._assess(final=False)                            # detect, score, publish
                    self._next_assess_ms = boundary + self.assess_every_ms
                i += 1
                self._apply(env)                                         # graph.apply
        finally:
            del buf[:i]  # applied (or refused: a dead-letter cap raised from there), never again

    # ---- apply, with transactions waiting for their accounts ---------------------------------------
    def _apply(self, env: Envelope) -> None:
        rec = env.record
        if isinstance(rec, Transaction):
            queue = self._pending.get(rec.platform_id)
            if queue:
                queue.append(env)
                self.stats.pending += 1
                return
            self._apply_tx(env, allow_wait=True)
            return
        self._held.let_go(env.source)
        if isinstance(rec, Outcome) and rec.platform_id not in self.ledger.platforms:
            # a label for nobody we know: kept, it would let any producer grow the state without bound
            self._dead(DecodeError(env.source, f"outcome for unregistered platform {rec.platform_id[:64]!r}", "validate"))
            return
        self.ledger.apply(rec)
        self.stats.applied += 1
        self._dirty = True
        if isinstance(rec, (Account, Platform)) and rec.platform_id in self._pending:
            self._release(rec.platform_id)

    def _apply_tx(self, env: Envelope, *, allow_wait: bool) -> bool:
        """Apply one transaction; False when it has to wait for a registry record."""
        tx = env.record
        assert isinstance(tx, Transaction)
        ledger = self.ledger
        if tx.from_account not in ledger.accounts or tx.to_account not in ledger.accounts or \
                tx.platform_id not in ledger.platforms:
            missing = ledger.missing_accounts(tx)
            if allow_wait:
                self._pending.setdefault(tx.platform_id, deque()).append(env)
                self.stats.pending += 1
                return False
            what = f"unregistered account {', '.join(missing)}" if missing else f"unregistered platform {tx.platform_id}"
            self._held.let_go(env.source)
            self._dead(DecodeError(env.source, f"transaction {tx.tx_id}: {what}", "validate"))
            return True
        self._held.let_go(env.source)
        res = self.ledger.apply_transaction(tx, checked=True)
        if res.applied:
            self.stats.applied += 1
            self._dirty = True
            if self._live:
                self._touched.add(tx.platform_id)
        elif res.reason == "duplicate tx_id":
            self.stats.duplicates += 1
        else:
            self._dead(DecodeError(env.source, f"transaction {tx.tx_id}: {res.reason}", "validate"))
        return True

    def _release(self, platform_id: str) -> None:
        queue = self._pending.get(platform_id)
        while queue:
            env = queue[0]
            tx = env.record
            assert isinstance(tx, Transaction)
            if self.ledger.missing_accounts(tx) or tx.platform_id not in self.ledger.platforms:
                break
            queue.popleft()
            self.stats.pending -= 1
            self._apply_tx(env, allow_wait=False)
        if not queue:
            self._pending.pop(platform_id, None)

    def _expire_pending(self, *, force: bool) -> None:
        """Dead-letter waiting transactions whose account or platform never came.

        Topics are read at different paces and partition by partition, so no event-time clock
        says when a registry record is late. A transaction waits until the source has been
        read to its end (force: replay exhausted, or a live consumer caught up on every
        partition), or until the waiting room holds more than `max_pending`.
        """
        over = self.stats.pending > self.max_pending
        if not (force or over):
            return
        for pid in list(self._pending):
            queue = self._pending[pid]
            while queue and (force or self.stats.pending > self.max_pending // 2):
                env = queue.popleft()
                self.stats.pending -= 1
                self._apply_tx(env, allow_wait=False)  # applies if the account came, else dead-letters
            if not queue:
                self._pending.pop(pid, None)
            else:
                self._release(pid)

    # ---- outputs ------------------------------------------------------------------------------------
    def _assess(self, *, final: bool) -> None:
        if not self.ledger.platforms:
            return
        if not self._dirty and not final:
            return
        self._expire_pending(force=False)
        owned = getattr(self.source, "owned", None)  # a worker scores the platforms whose money it reads
        assessments = self.assessor.assess(self.ledger, refit=final, population=self.population,
                                           platforms=None if owned is None else owned(self.ledger.platforms))
        alerts = self.assessor.new_alerts(assessments)
        self._touched = set()  # every platform was just assessed
        for out in self.outputs:
            out.publish(assessments, alerts, final)
        with self._lock:
            self.latest = assessments
        self.stats.assessments += 1
        self.stats.alerts += sum(1 for al in alerts if al["change"] != "seen")
        self._dirty = False
        log.info("assessed %d platforms at %d: %d alert events", len(assessments), self.ledger.now_ms, len(alerts))

    def _rescore_touched(self) -> None:
        """Caught up, records trickling in: rescore only the platforms they touched (rules afresh, the population
        part as last fitted), so a transaction reaches its score within a fraction of a second; full
        assessments and fits keep their event-time cadence. While the reading is behind, throttled to a third
        of the loop's time at most."""
        started = time.monotonic()
        owned = getattr(self.source, "owned", None)
        pids = list(self._touched) if owned is None else owned(self._touched)
        self._touched = set()
        previous = {a.platform_id: a for a in self.latest}
        fresh = self.assessor.rescore(self.ledger, pids, previous, self.population)
        if fresh:
            alerts = self.assessor.new_alerts(fresh)
            for out in self.outputs:  # final: each touched platform's score goes out, changed or not (its as_of moved)
                out.publish(fresh, alerts, True)
            previous.update((a.platform_id, a) for a in fresh)
            with self._lock:
                self.latest = sorted(previous.values(), key=lambda a: (-a.score, a.platform_id))
            self.stats.alerts += sum(1 for al in alerts if al["change"] != "seen")
        took = time.monotonic() - started
        # keeping up with the feed (the last poll came back short of a full batch), freshness may have the loop's
        # spare time: the next rescore as soon as `live_rescore_s` allows; behind it, at most a third of the
        # loop's time, so rescoring never starves the reading that would catch up
        spacing = 2 * took if getattr(self.source, "behind_feed", False) else 0.0
        self._rescore_due = time.monotonic() + max(self.live_rescore_s, spacing)

    # ---- several workers ----------------------------------------------------------------------------
    def _join_group_clock(self) -> None:
        """Caught up and idle: the stream's time is the furthest any worker of the group has reached, so that
        every worker assesses the same moment (the one a replay of all the records ends at)."""
        if time.monotonic() - self._population_at < 0.5 or not self.source.caught_up():
            return
        assert self.population is not None
        try:
            group = self.population.clock(self.ledger.now_ms)
        except Exception as exc:  # the shared store away: this worker's own time for now
            log.warning("group clock unknown: %s: %s", type(exc).__name__, exc)
            return
        if group <= self.ledger.now_ms:
            return
        # every boundary the group has passed, as a replay of all the records assesses it (the platforms of
        # this worker have no record in between: it is caught up), then the group's time
        while self._next_assess_ms is not None and self._next_assess_ms <= group:
            self.ledger.advance(self._next_assess_ms - 1)
            self._dirty = True
            self._assess(final=False)
            self._next_assess_ms += self.assess_every_ms
        self.ledger.advance(group)
        self._dirty = True

    def _population_turn(self) -> None:
        """Lead if this worker holds the lease; publish again what the leader's newer results change."""
        if time.monotonic() - self._population_at < 0.5:
            return
        self._population_at = time.monotonic()
        pop = self.population
        assert pop is not None
        try:
            pop.lead(self.assessor.statistics, self.ledger.platforms.keys())
            restated = pop.restated(self.assessor, self.latest)
        except Exception as exc:  # the shared store away: scores keep their last population part
            log.warning("population part not refreshed: %s: %s", type(exc).__name__, exc)
            return
        if restated:
            for out in self.outputs:
                out.publish(restated, [], False)
            with self._lock:
                self.latest = restated

    def _rebuild(self) -> None:
        """The group gave this worker partitions whose state it does not hold (their worker died or left):
        start again from an empty state and read every partition it holds from the beginning. What was
        published before is read back from the output topics, so nothing is published twice."""
        log.warning("rebuilding the state from the beginning of %d partitions",
                    len(getattr(self.source, "covered", None) or ()))
        try:
            self._flush_outputs()  # what this worker sent is on the topics before they are read back
        except Exception as exc:
            log.warning("flush before the rebuild failed: %s: %s", type(exc).__name__, exc)
        self.ledger, self.assessor = copy.deepcopy(self._pristine[0]), copy.deepcopy(self._pristine[1])
        self._pending, self._done, self._buffer, self._seq, self._unsorted = {}, {}, [], 0, False
        self._held = _Held()
        self._next_assess_ms, self._dirty, self.caught_up = None, False, False
        self._live, self._touched, self._keeping_up = False, set(), 0
        self.gate.partitions, self.gate.stream_ms = {}, 0
        self._arrived, self._paused = {}, set()
        self.stats = RunStats()  # counts of what the state holds: what it read, applied and refused from now on
        for out in [*self.outputs, self.dead_letters]:
            if hasattr(out, "restore"):
                out.restore(None)
        self.source.rewind()  # type: ignore[attr-defined]
        self.rebuilds += 1
        self.rebuild_started = time.monotonic()

    def _flush_outputs(self) -> None:
        self.dead_letters.flush()
        for out in self.outputs:
            out.flush()

    @staticmethod
    def _hold_back(batch: list[RawMessage], room: int) -> list[RawMessage]:
        """Process only `room` more inputs. The rest are read again after a restart: neither the commit
        points nor a checkpoint's positions cover them (the batch is in offset order per partition)."""
        return batch[:max(0, room)]

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Only once the outputs have flushed what this state reflects: a checkpoint never runs ahead of them."""
        assert self.checkpoint_path
        try:
            self.dead_letters.flush()
            for out in self.outputs:
                out.flush()
        except Exception as exc:  # a broker away: keep the previous checkpoint, try again later
            log.warning("checkpoint skipped, outputs did not flush: %s: %s", type(exc).__name__, exc)
            self._last_checkpoint = time.monotonic()
            return
        extra = {"buffer": list(self._buffer), "seq": self._seq, "next_assess_ms": self._next_assess_ms,
                 "gate_partitions": dict(self.gate.partitions),
                 "gate_stream_ms": self.gate.stream_ms,
                 "covered": sorted(getattr(self.source, "covered", None) or []),
                 "outputs": [getattr(out, "checkpoint_state", lambda: None)() for out in self.outputs],
                 "dead_letters": getattr(self.dead_letters, "checkpoint_state", lambda: None)()}
        save_checkpoint(self.checkpoint_path, Checkpoint(self.ledger, self.assessor, dict(self._pending),
                                                         dict(self._done), extra))
        self._last_checkpoint = time.monotonic()
        log.info("checkpoint saved at event time %d", self.ledger.now_ms)

    def _restore(self, path: str) -> None:
        cp = load_checkpoint(path)
        start_from = getattr(self.source, "start_from", None)
        if cp is None:
            if start_from:
                start_from(None)  # no state: rebuild it from the beginning of every input topic
                # and what earlier runs published is all on the output topics: read it back, publish it once
                # (a source that rebuilds at its first assignment reads it back then, when it is complete)
                if not hasattr(self.source, "rewind"):
                    for out in [*self.outputs, self.dead_letters]:
                        if hasattr(out, "restore"):
                            out.restore(None)
            return
        self.ledger = cp.ledger
        # the assessor's fitted state (attributes ending in _: models, alert episodes, first flags) comes from the
        # checkpoint, its settings from this run's constructor: a threshold changed for a restart takes effect
        self.assessor.__dict__.update({k: v for k, v in vars(cp.assessor).items() if k.endswith("_")})
        self._pending = cp.pending
        self._done = dict(cp.positions)
        ex = cp.extra
        self._buffer = sorted(tuple(b) for b in ex.get("buffer", []))  # a heap's order (format 4 and before) or any
        self._unsorted = False
        self._held = _Held()
        for env in [*(b[3] for b in self._buffer), *(e for q in self._pending.values() for e in q)]:
            self._held.hold(env.source)
        self._seq = ex.get("seq", 0)
        self._next_assess_ms = ex.get("next_assess_ms")
        self.gate.partitions = dict(ex.get("gate_partitions", {}))
        self.gate.stream_ms = ex.get("gate_stream_ms", 0)
        # outputs published past the checkpoint before the crash: they read their own topics back and will
        # not publish those again when the same records are processed again
        for out, state in zip(self.outputs, ex.get("outputs", [])):
            if state is not None and hasattr(out, "restore"):
                out.restore(state)
        if ex.get("dead_letters") is not None and hasattr(self.dead_letters, "restore"):
            self.dead_letters.restore(ex["dead_letters"])
        self.stats.pending = sum(len(q) for q in self._pending.values())
        self.restored = True
        self._dirty = True  # assess it once: a kill may have come between the checkpoint and the publication
        if start_from:
            covered = ex.get("covered")
            start_from(dict(cp.positions), *([[tuple(c) for c in covered]] if covered is not None else []))
        log.info("restored checkpoint %s at event time %d", path, self.ledger.now_ms)

    # ---- bookkeeping --------------------------------------------------------------------------------
    def _dead(self, err: DecodeError) -> None:
        self.dead_letters.put(err)
        self.stats.dead += 1
        self.policy.died()

    def _mark(self, topic: str, partition: int, offset: int) -> None:
        self._done[(topic, partition)] = offset + 1

    def _commit_points(self) -> dict[tuple[str, int], int]:
        """Each partition's next offset fully handled, held back to its oldest record still in the buffer or
        waiting for its account (`_Held`: kept as records come and go, not found by walking the waiting
        records every turn, which a full buffer made a few percent of a catch-up)."""
        points = {k: v for k, v in self._done.items() if k[1] >= 0}
        for key, oldest in self._held.oldest():
            if key in points and oldest < points[key]:
                points[key] = oldest
        return points


class _Held:
    """The offsets of the input records in the pipeline's buffer or waiting room, per partition: a min-heap per
    partition and the offsets let go since, removed from the heap's top as they surface (lazy deletion). Files
    (partition -1) commit nothing and are not tracked."""

    def __init__(self) -> None:
        self.heaps: dict[tuple[str, int], list[int]] = {}
        self.gone: dict[tuple[str, int], dict[int, int]] = {}  # partition -> offset -> times let go (re-reads)

    def hold(self, src: RawMessage) -> None:
        if src.partition >= 0:
            key = (src.topic, src.partition)
            heap = self.heaps.get(key)
            if heap is None:
                heap = self.heaps[key] = []
                self.gone[key] = {}
            heapq.heappush(heap, src.offset)

    def let_go(self, src: RawMessage) -> None:
        if src.partition >= 0:
            gone = self.gone[(src.topic, src.partition)]
            gone[src.offset] = gone.get(src.offset, 0) + 1

    def oldest(self) -> Iterable[tuple[tuple[str, int], int]]:
        """(partition, its oldest offset still held), for the partitions holding any."""
        for key, heap in self.heaps.items():
            gone = self.gone[key]
            while heap and gone:
                top = heap[0]
                n = gone.get(top)
                if n is None:
                    break
                heapq.heappop(heap)
                if n == 1:
                    del gone[top]
                else:
                    gone[top] = n - 1
            if heap:
                yield key, heap[0]
