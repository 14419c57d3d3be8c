"""Where the service keeps what it knows: scores and their history, alerts and their workflow, the
outbox of alert events, keys, webhooks and their dead letters, outcomes, tips and the audit log.

One interface (this class) over two databases (service/db.py): SQLite by default (a file, WAL, one
writer at a time) and PostgreSQL when the target is a DSN (`postgresql://...`: one store shared by
several workers, writers serialised by a lock per schema). One set of versioned migrations upgrades
either in place. SQL here is written once, in SQLite's spelling limited to what PostgreSQL also
understands (`insert ... on conflict do update`, `returning`; no `insert or replace`, no two-argument
`max`); the dialect layer translates placeholders and migration DDL. Every read that returns
platform data takes a `Scope` and applies it in SQL, so lists, counts and lookups agree with what
the principal may see; an object outside the scope is indistinguishable from a missing one.

It is also a pipeline Output: the loop publishes into it like into Kafka, and an alert event
(opened, escalated, reopened, transitioned) is written to the outbox in the same transaction,
from which SSE and webhooks deliver at their own pace.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from typing import Any, Callable, Iterator

from detectors.assess import Assessment
from detectors.base import SEVERITIES
from service.db import Database, is_dsn, open_database, redact
from service.scope import EVERYTHING, Scope, jurisdiction_prefix

__all__ = ["Store", "StoreError", "NotFound", "Conflict", "jurisdiction_prefix", "ALERT_STATES", "RESOLUTIONS",
           "OUTCOME_STATUSES", "SCHEMA_VERSION", "wall_ms", "Invalid"]

ALERT_STATES = ("new", "acknowledged", "investigating", "closed")
# an alert closed as a false alarm is recorded as an outcome NORMAL with this source: one label channel
FALSE_ALARM_SOURCE = "false alarm: alert"
# closing resolutions: the seeds' dispositions as outcomes of a case, and the false alarm (a label)
RESOLUTIONS: dict[str, tuple[str, str]] = {
    "RECTIFIED": ("已整改", "rectified"),
    "BUSINESS_STOPPED": ("已停止业务", "business stopped"),
    "BANNED": ("已取缔", "banned"),
    "REFERRED_TO_POLICE": ("已移送公安", "referred to police"),
    "FALSE_ALARM": ("误报", "false alarm"),
}
OUTCOME_STATUSES = ("NORMAL", "RECTIFYING", "SUSPENDED", "CLOSED", "WITHDRAWAL_DIFFICULTY", "POLICE_INVESTIGATION",
                    "RUN_AWAY")
GENESIS = "0" * 64


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """The object is not in a state that allows this."""


class Invalid(StoreError):
    """The request lacks what this change needs."""


# ---- migrations: each runs once, in order; table schema_version says how far a database is ------------
# Written in SQLite's spelling; service/db.py's pg_ddl translates them for PostgreSQL (and refuses what it
# cannot translate, so a new migration that only SQLite understands fails in the tests, not in production).
_V1 = """
create table if not exists platform_score (
  platform_id text primary key, name text, kind text, licence text, jurisdiction text,
  score real, tier text, disposition text, as_of integer, keywords text, body text not null);
create index if not exists platform_score_rank on platform_score(score desc);
create table if not exists alert (
  alert_id text primary key, platform_id text, jurisdiction text, kind text, detector text, severity text,
  severity_rank integer, departments text, raised_at integer, body text not null);
create index if not exists alert_time on alert(raised_at desc);
"""
_V2 = """
alter table platform_score add column custodian_id text;
alter table platform_score add column departments text not null default ',';
alter table alert add column custodian_id text;
alter table alert add column episode integer not null default 1;
alter table alert add column last_seen integer;
alter table alert add column state text not null default 'new';
alter table alert add column resolution text;
alter table alert add column updated_at integer;
create index alert_platform on alert(platform_id);
create table score_history (
  platform_id text not null, as_of integer not null, score real not null, tier text not null,
  detectors text not null, recorded_at integer not null, primary key (platform_id, as_of));
create table alert_transition (
  id integer primary key autoincrement, alert_id text not null, at integer not null, actor text not null,
  from_state text, to_state text not null, resolution text, note text);
create index alert_transition_alert on alert_transition(alert_id);
create table outbox (
  seq integer primary key autoincrement, at integer not null, type text not null, alert_id text not null,
  platform_id text not null, kind text, jurisdiction text, custodian_id text, departments text not null,
  body text not null);
create table api_key (
  key_id text primary key, name text not null, role text not null, departments text not null,
  jurisdictions text not null, custodian_id text, everything integer not null default 0, salt text not null,
  hash text not null, created_at integer not null, created_by text not null, revoked_at integer,
  last_used_at integer);
create table webhook (
  webhook_id text primary key, owner_key_id text not null, url text not null, created_at integer not null,
  active integer not null default 1, cursor integer not null, delivered integer not null default 0);
create table webhook_dead_letter (
  id integer primary key autoincrement, webhook_id text not null, event_seq integer not null,
  attempts integer not null, last_error text not null, failed_at integer not null,
  status text not null default 'dead', redelivered_at integer, redelivered_by text);
create index webhook_dead_letter_hook on webhook_dead_letter(webhook_id, status);
create table outcome (
  id integer primary key autoincrement, platform_id text not null, status text not null,
  decided_at integer not null, source text not null, note text, recorded_by text not null,
  recorded_at integer not null, published integer not null default 0);
create index outcome_platform on outcome(platform_id);
create table tip (
  receipt_id text primary key, received_at integer not null, platform_ref text not null, platform_id text,
  text text not null, contact text, published integer not null default 0);
create index tip_platform on tip(platform_id);
create table audit (
  seq integer primary key, at integer not null, actor text not null, action text not null,
  object text not null, detail text not null, prev_hash text not null, hash text not null);
create trigger audit_no_update before update on audit begin select raise(abort, 'the audit log is append-only'); end;
create trigger audit_no_delete before delete on audit begin select raise(abort, 'the audit log is append-only'); end;
"""
# the desk's reports: each kept report (the inventory briefing) is compared with the previous one of the same scope
_V3 = """
create table report (
  report_id integer primary key autoincrement, kind text not null, scope_key text not null, created_at integer not null,
  actor text not null, body text not null);
create index report_scope on report(kind, scope_key, report_id);
"""
# several workers: the rows each shares for the population part, what the leader fitted, the group's clock
_V4 = """
create table population_row (
  scope text not null, round_ms integer not null, platform_id text not null, segment text not null,
  features text not null, label integer, weight real, refit integer not null, worker text not null,
  primary key (scope, round_ms, platform_id));
create table population_result (
  scope text not null, platform_id text not null, round_ms integer not null, body text not null,
  primary key (scope, platform_id));
create table population_round (
  scope text not null, round_ms integer not null, fitted_by text not null, fitted_at integer not null,
  platforms integer not null, refit integer not null, primary key (scope, round_ms));
create table worker_clock (
  scope text not null, worker text not null, now_ms integer not null, seen_at integer not null,
  primary key (scope, worker));
create table leader_lease (scope text primary key, holder text not null, expires_at integer not null);
"""
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


def _audit_hash(prev: str, seq: int, at: int, actor: str, action: str, obj: str, detail: str) -> str:
    body = json.dumps([prev, seq, at, actor, action, obj, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _csv(items: Any) -> str:
    return "," + ",".join(items) + ","


def _uncsv(text: str | None) -> list[str]:
    return [x for x in (text or "").split(",") if x]


class Store:
    """`path` is a SQLite file (or ':memory:') or a PostgreSQL DSN (`postgresql://user:pw@host:port/db`)."""

    def __init__(self, path: str = ":memory:", *, clock: Callable[[], int] = wall_ms,
                 outbox_retention_days: float = 30.0) -> None:
        self.path = path
        self.clock = clock
        self.outbox_retention_ms = int(outbox_retention_days * 86_400_000)
        self._touched: dict[str, int] = {}
        self._next_prune = 0
        self._conn: Database | None = None
        self._lock = threading.RLock()
        self._last_sig: dict[str, tuple[float, str, str]] | None = None
        self._as_of: dict[str, int] | None = None

    # ---- connection and migrations ---------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Store({redact(self.path)!r})"  # a DSN's password stays out of logs and tracebacks

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return "postgresql" if is_dsn(self.path) else "sqlite"

    @property
    def conn(self) -> Database:
        """The connection (SQLite's `?` placeholders on both backends), migrated on first use."""
        if self._conn is None:
            db = open_database(self.path)
            try:
                db.migrate(MIGRATIONS)
            except BaseException:
                db.close()
                raise
            self._conn = db
        return self._conn

    def schema_version(self) -> int:
        with self._lock:
            return self.conn.schema_version()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _tx(self) -> "_Transaction":
        return _Transaction(self)

    def _rows(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.conn.execute(sql, args)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def _one(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, args)
        return dict(rows[0]) if rows else None

    # ---- several workers: the population part and the group's clock (service/population.py) -------------
    def post_population_rows(self, scope: str, worker: str, round_ms: int,
                             rows: list[tuple[str, str, str, int | None, float | None]], refit: bool) -> None:
        """A worker's platforms at one moment: (platform, segment, features as JSON, label, weight)."""
        with self._tx() as c:
            c.executemany(
                "insert into population_row (scope, round_ms, platform_id, segment, features, label, weight, refit, "
                "worker) values (?,?,?,?,?,?,?,?,?) on conflict (scope, round_ms, platform_id) do update set "
                "segment = excluded.segment, features = excluded.features, label = excluded.label, "
                "weight = excluded.weight, refit = excluded.refit, worker = excluded.worker",
                [(scope, round_ms, pid, seg, feats, label, weight, int(refit), worker)
                 for pid, seg, feats, label, weight in rows])

    def population_rounds(self, scope: str, after: int) -> list[tuple[int, int]]:
        """(moment, platforms posted) of the moments after `after` that rows wait for, newest first."""
        return [(int(r["round_ms"]), int(r["n"])) for r in self._rows(
            "select round_ms, count(*) as n from population_row where scope = ? and round_ms > ? "
            "group by round_ms order by round_ms desc", (scope, after))]

    def population_round_rows(self, scope: str, round_ms: int) -> list[dict[str, Any]]:
        return self._rows("select platform_id, segment, features, label, weight, refit from population_row "
                          "where scope = ? and round_ms = ? order by platform_id", (scope, round_ms))

    def save_population_results(self, scope: str, round_ms: int, worker: str, results: list[tuple[str, str]],
                                refit: bool, keep_rounds: int = 8) -> None:
        """What the leader fitted for one moment, per platform; rows of that moment and older ones are done."""
        with self._tx() as c:
            c.executemany(
                "insert into population_result (scope, platform_id, round_ms, body) values (?,?,?,?) "
                "on conflict (scope, platform_id) do update set round_ms = excluded.round_ms, body = excluded.body "
                "where excluded.round_ms >= population_result.round_ms",
                [(scope, pid, round_ms, body) for pid, body in results])
            c.execute("insert into population_round (scope, round_ms, fitted_by, fitted_at, platforms, refit) "
                      "values (?,?,?,?,?,?) on conflict (scope, round_ms) do nothing",
                      (scope, round_ms, worker, self.clock(), len(results), int(refit)))
            c.execute("delete from population_row where scope = ? and round_ms <= ?", (scope, round_ms))
            # bounded: moments that never complete (a worker's own idle moments) do not pile up
            old = c.execute("select round_ms from population_round where scope = ? order by round_ms desc",
                            (scope,)).fetchall()
            if len(old) > keep_rounds:
                c.execute("delete from population_round where scope = ? and round_ms < ?", (scope, old[keep_rounds - 1][0]))

    def prune_population_rows(self, scope: str, keep_rounds: int) -> None:
        with self._tx() as c:
            kept = c.execute("select distinct round_ms from population_row where scope = ? order by round_ms desc",
                             (scope,)).fetchall()
            if len(kept) > keep_rounds:
                c.execute("delete from population_row where scope = ? and round_ms < ?", (scope, kept[keep_rounds - 1][0]))

    def population_results(self, scope: str) -> dict[str, tuple[int, str]]:
        """platform -> (moment, what the leader fitted for it then)."""
        return {r["platform_id"]: (int(r["round_ms"]), r["body"]) for r in self._rows(
            "select platform_id, round_ms, body from population_result where scope = ?", (scope,))}

    def last_population_round(self, scope: str) -> int:
        row = self._one("select max(round_ms) as m from population_round where scope = ?", (scope,))
        return int(row["m"]) if row and row["m"] is not None else -1

    def group_clock(self, scope: str, worker: str, now_ms: int) -> int:
        """Say how far this worker's stream has reached; the furthest any worker of the group has."""
        with self._tx() as c:
            c.execute("insert into worker_clock (scope, worker, now_ms, seen_at) values (?,?,?,?) "
                      "on conflict (scope, worker) do update set now_ms = excluded.now_ms, seen_at = excluded.seen_at "
                      "where excluded.now_ms >= worker_clock.now_ms", (scope, worker, now_ms, self.clock()))
            row = c.execute("select max(now_ms) from worker_clock where scope = ?", (scope,)).fetchone()
        return int(row[0]) if row and row[0] is not None else now_ms

    def hold_lease(self, scope: str, worker: str, ttl_ms: int) -> bool:
        """Take or keep the group's leader lease (it passes on when its holder stops renewing it)."""
        now = self.clock()
        with self._tx() as c:
            c.execute("insert into leader_lease (scope, holder, expires_at) values (?,?,?) on conflict (scope) do "
                      "update set holder = excluded.holder, expires_at = excluded.expires_at "
                      "where leader_lease.holder = excluded.holder or leader_lease.expires_at < ?",
                      (scope, worker, now + ttl_ms, now))
            row = c.execute("select holder from leader_lease where scope = ?", (scope,)).fetchone()
        return bool(row) and row[0] == worker

    def release_lease(self, scope: str, worker: str) -> None:
        with self._tx() as c:
            c.execute("delete from leader_lease where scope = ? and holder = ?", (scope, worker))

    # ---- the pipeline writes ---------------------------------------------------------------------
    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        """Scores (and their history when they change); alert events become rows and outbox entries.

        A repeat of an open alert (same id: platform, detector, episode) updates it: latest evidence,
        last seen, severity only upwards. Replays and restarts therefore never open a second alert.
        """
        now = self.clock()
        with self._tx() as c:
            if self._last_sig is None:
                self._last_sig = {r[0]: (r[1], r[2], r[3]) for r in c.execute(
                    "select h.platform_id, h.score, h.tier, h.detectors from score_history h join "
                    "(select platform_id, max(as_of) m from score_history group by platform_id) l "
                    "on h.platform_id = l.platform_id and h.as_of = l.m")}
            if self._as_of is None:
                self._as_of = dict(c.execute("select platform_id, as_of from platform_score").fetchall())
            # a state being rebuilt (a restart without checkpoint, a replay) is behind what the store shows:
            # its older scores neither replace the newer ones nor rewrite their history
            fresh = [a for a in assessments if a.as_of >= (self._as_of.get(a.platform_id) or 0)]
            # the guard in SQL as well: another worker's newer score wins over this one's stale cache
            c.executemany(
                "insert into platform_score (platform_id, name, kind, licence, jurisdiction, score, tier, "
                "disposition, as_of, keywords, body, custodian_id, departments) values (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "on conflict (platform_id) do update set name = excluded.name, kind = excluded.kind, "
                "licence = excluded.licence, jurisdiction = excluded.jurisdiction, score = excluded.score, "
                "tier = excluded.tier, disposition = excluded.disposition, as_of = excluded.as_of, "
                "keywords = excluded.keywords, body = excluded.body, custodian_id = excluded.custodian_id, "
                "departments = excluded.departments where excluded.as_of >= platform_score.as_of",
                [(a.platform_id, a.name, a.kind, a.licence, a.jurisdiction, a.score, a.tier, a.disposition, a.as_of,
                  ",".join(a.registration_keywords), json.dumps(a.as_dict(), ensure_ascii=False), a.custodian_id,
                  _csv(a.lead_departments)) for a in fresh])
            history = []
            for a in fresh:
                self._as_of[a.platform_id] = a.as_of
                sig = (a.score, a.tier, ",".join(sorted({f.detector for f in a.findings})))
                if self._last_sig.get(a.platform_id) != sig:
                    self._last_sig[a.platform_id] = sig
                    history.append((a.platform_id, a.as_of, a.score, a.tier, sig[2], now))
            # ... and history only for a score that is now the platform's (not one another worker has passed)
            c.executemany("insert into score_history (platform_id, as_of, score, tier, detectors, recorded_at) "
                          "select ?, ?, ?, ?, ?, ? where ? >= (select as_of from platform_score where platform_id = ?) "
                          "on conflict (platform_id, as_of) do update set score = excluded.score, tier = excluded.tier, "
                          "detectors = excluded.detectors, recorded_at = excluded.recorded_at",
                          [(*h, h[1], h[0]) for h in history])
            for al in alerts:
                self._upsert_alert(c, al, now)
            if now >= self._next_prune:  # bounded: events older than the retention are gone (SSE resumes
                # within it; a dead letter whose event is gone says so when redelivered)
                c.execute("delete from outbox where at < ?", (now - self.outbox_retention_ms,))
                self._next_prune = now + 3_600_000

    def _upsert_alert(self, c: Database, al: dict[str, Any], now: int) -> None:
        row = c.execute("select severity_rank, state, last_seen from alert where alert_id = ?",
                        (al["alert_id"],)).fetchone()
        rank = SEVERITIES.index(al["severity"])
        record = {k: v for k, v in al.items() if k != "change"}
        seen = al.get("last_seen", al["raised_at"])
        if row is None:
            c.execute("insert into alert (alert_id, platform_id, jurisdiction, kind, detector, severity, severity_rank, "
                      "departments, raised_at, body, custodian_id, episode, last_seen, state, updated_at) "
                      "values (?,?,?,?,?,?,?,?,?,?,?,?,?,'new',?)",
                      (al["alert_id"], al["platform_id"], al["jurisdiction"], al["kind"], al["detector"],
                       al["severity"], rank, _csv(al["lead_departments"]), al["raised_at"],
                       json.dumps(record, ensure_ascii=False), al.get("custodian_id"), al.get("episode", 1), seen, now))
            self._event(c, "alert.opened", al["alert_id"], now)
            return
        old_rank, state, last_seen = row
        if last_seen is not None and seen < last_seen:
            return  # an older observation (a replay behind the store): nothing new
        if rank > old_rank:
            c.execute("update alert set severity = ?, severity_rank = ?, body = ?, last_seen = ?, updated_at = ?, "
                      "departments = ? where alert_id = ?",
                      (al["severity"], rank, json.dumps(record, ensure_ascii=False), seen, now,
                       _csv(al["lead_departments"]), al["alert_id"]))
            if state == "closed":
                c.execute("update alert set state = 'new', resolution = null where alert_id = ?", (al["alert_id"],))
                c.execute("insert into alert_transition (alert_id, at, actor, from_state, to_state, note) values "
                          "(?,?,?,?,?,?)", (al["alert_id"], now, "system", "closed", "new",
                                            f"reopened: severity rose to {al['severity']}"))
                self._event(c, "alert.reopened", al["alert_id"], now)
            else:
                self._event(c, "alert.escalated", al["alert_id"], now)
        else:
            # latest evidence and last seen; the severity stays at its highest
            record["severity"] = SEVERITIES[old_rank]
            c.execute("update alert set body = ?, last_seen = ? where alert_id = ?",
                      (json.dumps(record, ensure_ascii=False), seen, al["alert_id"]))

    def _event(self, c: Database, type_: str, alert_id: str, now: int) -> None:
        row = c.execute(f"select {_ALERT_COLS} from alert a where a.alert_id = ?", (alert_id,)).fetchone()
        view = _alert_view(dict(zip(_ALERT_COL_NAMES, row)))
        c.execute("insert into outbox (at, type, alert_id, platform_id, kind, jurisdiction, custodian_id, departments, "
                  "body) values (?,?,?,?,?,?,?,?,?)",
                  (now, type_, alert_id, view["platform_id"], view["kind"], view["jurisdiction"],
                   view.get("custodian_id"), _csv(view["lead_departments"]), json.dumps(view, ensure_ascii=False)))

    def flush(self) -> None:
        pass

    # ---- platforms -------------------------------------------------------------------------------
    def platforms(self, scope: Scope = EVERYTHING, *, jurisdiction: str | None = None, kind: str | None = None,
                  tier: str | None = None, key_targets: bool = False, limit: int = 100, offset: int = 0
                  ) -> tuple[int, list[dict[str, Any]]]:
        """Platforms in scope, riskiest first (`ranking` with its default order)."""
        return self.ranking(scope, jurisdiction=jurisdiction, kind=kind, tier=tier, key_targets=key_targets,
                            limit=limit, offset=offset)

    def platform(self, platform_id: str, scope: Scope = EVERYTHING) -> dict[str, Any] | None:
        cond, args = scope.platform_sql("p")
        row = self._one(f"select p.body, p.custodian_id from platform_score p where p.platform_id = ? and {cond}",
                        [platform_id, *args])
        return {**json.loads(row["body"]), "custodian_id": row["custodian_id"]} if row else None

    def find_platform(self, ref: str) -> str | None:
        """A platform named by id or by its registered name (tip-offs use either)."""
        ref = ref.strip()
        row = self._one("select platform_id from platform_score where platform_id = ? or lower(name) = lower(?) "
                        "order by platform_id = ? desc limit 1", (ref, ref, ref))
        return row["platform_id"] if row else None

    def history(self, platform_id: str, scope: Scope = EVERYTHING, *, limit: int = 500) -> list[dict[str, Any]]:
        """Every published score change, oldest first (the newest `limit`)."""
        cond, args = scope.platform_sql("p")
        rows = self._rows(f"select h.as_of, h.score, h.tier, h.detectors, h.recorded_at from score_history h where "
                          f"h.platform_id = ? and exists (select 1 from platform_score p where p.platform_id = "
                          f"h.platform_id and {cond}) order by h.as_of desc limit ?", [platform_id, *args, limit])
        return [{"as_of": r["as_of"], "score": r["score"], "tier": r["tier"], "detectors": _uncsv(r["detectors"]),
                 "recorded_at": r["recorded_at"]} for r in reversed(rows)]

    # ---- alerts and their workflow ---------------------------------------------------------------
    def alerts(self, scope: Scope = EVERYTHING, *, jurisdiction: str | None = None, department: str | None = None,
               platform_id: str | None = None, min_severity: str | None = None, state: str | None = None,
               resolution: str | None = None, limit: int = 100, offset: int = 0
               ) -> tuple[int, list[dict[str, Any]]]:
        cond, args = scope.alert_sql("a")
        where, wargs = [cond], list(args)
        if jurisdiction is not None:
            where.append("a.jurisdiction like ?")
            wargs.append(jurisdiction_prefix(jurisdiction) + "%")
        if department is not None:
            where.append("a.departments like ?")
            wargs.append(f"%,{department},%")
        if platform_id is not None:
            where.append("a.platform_id = ?")
            wargs.append(platform_id)
        if min_severity is not None:
            where.append("a.severity_rank >= ?")
            wargs.append(SEVERITIES.index(min_severity))
        if state is not None:
            where.append("a.state = ?")
            wargs.append(state)
        if resolution is not None:
            where.append("a.resolution = ?")
            wargs.append(resolution)
        sql = " where " + " and ".join(where)
        with self._lock:
            total = self.conn.execute(f"select count(*) from alert a{sql}", wargs).fetchone()[0]
            rows = self._rows(f"select {_ALERT_COLS} from alert a{sql} order by a.raised_at desc, a.alert_id "
                              f"limit ? offset ?", [*wargs, limit, offset])
        return total, [_alert_view(r) for r in rows]

    def alert(self, alert_id: str, scope: Scope = EVERYTHING) -> dict[str, Any] | None:
        cond, args = scope.alert_sql("a")
        row = self._one(f"select {_ALERT_COLS} from alert a where a.alert_id = ? and {cond}", [alert_id, *args])
        if row is None:
            return None
        view = _alert_view(row)
        view["transitions"] = self._rows("select at, actor, from_state, to_state, resolution, note from "
                                         "alert_transition where alert_id = ? order by id", (alert_id,))
        return view

    def transition(self, alert_id: str, scope: Scope, actor: str, to_state: str, *, resolution: str | None = None,
                   note: str | None = None) -> dict[str, Any]:
        """Move an alert forward in new -> acknowledged -> investigating -> closed; closing needs a resolution."""
        if not scope.supervises:
            raise NotFound(alert_id)  # a custodian bank reads its clients' alerts; supervisors work them
        if to_state not in ALERT_STATES[1:]:
            raise Invalid(f"an alert can be moved to {', '.join(ALERT_STATES[1:])}, not {to_state!r}")
        if to_state == "closed" and (resolution not in RESOLUTIONS or not (note or "").strip()):
            raise Invalid(f"closing needs a resolution ({', '.join(RESOLUTIONS)}) and a note")
        if to_state != "closed" and resolution is not None:
            raise Invalid("only closing takes a resolution")
        cond, args = scope.alert_sql("a")
        now = self.clock()
        with self._tx() as c:
            row = c.execute(f"select a.state from alert a where a.alert_id = ? and {cond}", [alert_id, *args]).fetchone()
            if row is None:
                raise NotFound(alert_id)
            frm = row[0]
            if ALERT_STATES.index(to_state) <= ALERT_STATES.index(frm):
                raise Conflict(f"alert {alert_id} is {frm}; it moves forward only "
                               f"({' -> '.join(ALERT_STATES)})")
            c.execute("update alert set state = ?, resolution = ?, updated_at = ? where alert_id = ?",
                      (to_state, resolution, now, alert_id))
            c.execute("insert into alert_transition (alert_id, at, actor, from_state, to_state, resolution, note) "
                      "values (?,?,?,?,?,?,?)", (alert_id, now, actor, frm, to_state, resolution, note))
            self._event(c, "alert.transitioned", alert_id, now)
            self._audit(c, actor, f"alert.{to_state}", f"alert:{alert_id}",
                        {"from": frm, "to": to_state, "resolution": resolution, "note": note})
            if resolution == "FALSE_ALARM":  # a label: published on supervision.outcomes like any outcome
                pid, det = c.execute("select platform_id, detector from alert where alert_id = ?",
                                     (alert_id,)).fetchone()
                c.execute("insert into outcome (platform_id, status, decided_at, source, note, recorded_by, "
                          "recorded_at) values (?,?,?,?,?,?,?)",
                          (pid, "NORMAL", now, f"{FALSE_ALARM_SOURCE} {alert_id} ({det})", note, actor, now))
        view = self.alert(alert_id)
        assert view is not None
        return view

    def false_alarms(self) -> list[dict[str, Any]]:
        """Alerts closed as false alarms: labels the detection work learns from."""
        return self._rows("select a.alert_id, a.platform_id, a.detector, a.severity, a.episode, t.at closed_at, "
                          "t.actor, t.note from alert a join alert_transition t on t.alert_id = a.alert_id "
                          "and t.to_state = 'closed' where a.resolution = 'FALSE_ALARM' order by t.id")

    # ---- the outbox: alert events for SSE and webhooks ---------------------------------------------
    def events_after(self, seq: int, scope: Scope, *, limit: int = 200) -> list[dict[str, Any]]:
        cond, args = scope.alert_sql("o")
        rows = self._rows(f"select o.seq, o.at, o.type, o.body from outbox o where o.seq > ? and {cond} "
                          f"order by o.seq limit ?", [seq, *args, limit])
        return [{"seq": r["seq"], "at": r["at"], "type": r["type"], "alert": json.loads(r["body"])} for r in rows]

    def event(self, seq: int) -> dict[str, Any] | None:
        r = self._one("select seq, at, type, body, kind, jurisdiction, custodian_id, departments from outbox "
                      "where seq = ?", (seq,))
        if r is None:
            return None
        return {"seq": r["seq"], "at": r["at"], "type": r["type"], "alert": json.loads(r["body"])}

    def last_event_seq(self) -> int:
        with self._lock:
            return int(self.conn.execute("select coalesce(max(seq), 0) from outbox").fetchone()[0])

    # ---- keys ----------------------------------------------------------------------------------
    def add_key(self, *, key_id: str, name: str, role: str, departments: list[str], jurisdictions: list[str],
                custodian_id: str | None, everything: bool, salt: str, digest: str, created_by: str) -> None:
        now = self.clock()
        with self._tx() as c:
            c.execute("insert into api_key (key_id, name, role, departments, jurisdictions, custodian_id, everything, "
                      "salt, hash, created_at, created_by) values (?,?,?,?,?,?,?,?,?,?,?)",
                      (key_id, name, role, _csv(departments), _csv(jurisdictions), custodian_id, int(everything),
                       salt, digest, now, created_by))
            self._audit(c, created_by, "key.create", f"key:{key_id}",
                        {"name": name, "role": role, "departments": departments, "jurisdictions": jurisdictions,
                         "custodian_id": custodian_id, "everything": everything})

    def key(self, key_id: str) -> dict[str, Any] | None:
        row = self._one("select * from api_key where key_id = ?", (key_id,))
        return _key_view(row, secret=True) if row else None

    def keys(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        cond = "" if include_revoked else " where revoked_at is null"
        return [_key_view(r) for r in self._rows(f"select * from api_key{cond} order by created_at, key_id")]

    def revoke_key(self, key_id: str, actor: str) -> None:
        now = self.clock()
        with self._tx() as c:
            n = c.execute("update api_key set revoked_at = ? where key_id = ? and revoked_at is null",
                          (now, key_id)).rowcount
            if not n:
                raise NotFound(key_id)
            c.execute("update webhook set active = 0 where owner_key_id = ?", (key_id,))
            self._audit(c, actor, "key.revoke", f"key:{key_id}", {})

    def touch_key(self, key_id: str) -> None:
        """Last use, at most once a minute per key (a write per request would serialise reads)."""
        now = self.clock()
        if now - self._touched.get(key_id, 0) < 60_000:
            return
        self._touched[key_id] = now
        with self._tx() as c:
            c.execute("update api_key set last_used_at = ? where key_id = ? and "
                      "(last_used_at is null or last_used_at < ?)", (now, key_id, now - 60_000))

    # ---- webhooks ------------------------------------------------------------------------------
    def add_webhook(self, webhook_id: str, owner_key_id: str, url: str, actor: str) -> dict[str, Any]:
        now = self.clock()
        with self._tx() as c:
            cursor = c.execute("select coalesce(max(seq), 0) from outbox").fetchone()[0]
            c.execute("insert into webhook (webhook_id, owner_key_id, url, created_at, cursor) values (?,?,?,?,?)",
                      (webhook_id, owner_key_id, url, now, cursor))
            self._audit(c, actor, "webhook.create", f"webhook:{webhook_id}", {"url": url, "owner": owner_key_id})
        hook = self.webhook(webhook_id)
        assert hook is not None
        return hook

    def webhook(self, webhook_id: str, owner_key_id: str | None = None) -> dict[str, Any] | None:
        if owner_key_id is None:
            return self._one("select * from webhook where webhook_id = ?", (webhook_id,))
        return self._one("select * from webhook where webhook_id = ? and owner_key_id = ?", (webhook_id, owner_key_id))

    def webhooks(self, owner_key_id: str | None = None, *, active_only: bool = False) -> list[dict[str, Any]]:
        where, args = [], []
        if owner_key_id is not None:
            where.append("owner_key_id = ?")
            args.append(owner_key_id)
        if active_only:
            where.append("active = 1")
        cond = (" where " + " and ".join(where)) if where else ""
        return self._rows(f"select * from webhook{cond} order by created_at, webhook_id", args)

    def delete_webhook(self, webhook_id: str, actor: str) -> None:
        with self._tx() as c:
            if not c.execute("update webhook set active = 0 where webhook_id = ? and active = 1",
                             (webhook_id,)).rowcount:
                raise NotFound(webhook_id)
            self._audit(c, actor, "webhook.delete", f"webhook:{webhook_id}", {})

    def advance_webhook(self, webhook_id: str, seq: int, *, delivered: int) -> None:
        with self._tx() as c:
            c.execute("update webhook set cursor = case when cursor > ? then cursor else ? end, "
                      "delivered = delivered + ? where webhook_id = ?", (seq, seq, delivered, webhook_id))

    def webhook_dead_letter(self, webhook_id: str, seq: int, attempts: int, error: str) -> None:
        with self._tx() as c:
            c.execute("insert into webhook_dead_letter (webhook_id, event_seq, attempts, last_error, failed_at) "
                      "values (?,?,?,?,?)", (webhook_id, seq, attempts, error[:500], self.clock()))

    def webhook_dead_letters(self, webhook_id: str, *, status: str | None = None) -> list[dict[str, Any]]:
        cond, args = "", [webhook_id]
        if status is not None:
            cond = " and status = ?"
            args.append(status)
        return self._rows(f"select * from webhook_dead_letter where webhook_id = ?{cond} order by id", args)

    def redeliver(self, webhook_id: str, dead_letter_id: int, actor: str) -> None:
        with self._tx() as c:
            if not c.execute("update webhook_dead_letter set status = 'queued', redelivered_at = ?, redelivered_by = ? "
                             "where id = ? and webhook_id = ? and status = 'dead'",
                             (self.clock(), actor, dead_letter_id, webhook_id)).rowcount:
                raise NotFound(str(dead_letter_id))
            self._audit(c, actor, "webhook.redeliver", f"webhook:{webhook_id}", {"dead_letter": dead_letter_id})

    def settle_dead_letter(self, dead_letter_id: int, *, delivered: bool, error: str = "") -> None:
        with self._tx() as c:
            if delivered:
                c.execute("update webhook_dead_letter set status = 'redelivered' where id = ?", (dead_letter_id,))
            else:
                c.execute("update webhook_dead_letter set status = 'dead', attempts = attempts + 1, last_error = ?, "
                          "failed_at = ? where id = ?", (error[:500], self.clock(), dead_letter_id))

    # ---- outcomes ------------------------------------------------------------------------------
    def add_outcome(self, platform_id: str, status: str, decided_at: int, source: str, note: str | None,
                    actor: str) -> dict[str, Any]:
        now = self.clock()
        with self._tx() as c:
            oid = c.execute("insert into outcome (platform_id, status, decided_at, source, note, recorded_by, "
                            "recorded_at) values (?,?,?,?,?,?,?) returning id",
                            (platform_id, status, decided_at, source, note, actor, now)).fetchone()[0]
            self._audit(c, actor, "outcome.record", f"platform:{platform_id}",
                        {"status": status, "decided_at": decided_at, "source": source, "note": note})
        return {"outcome_id": oid, "platform_id": platform_id, "status": status, "decided_at": decided_at,
                "source": source, "note": note, "recorded_by": actor, "recorded_at": now}

    def outcomes(self, platform_id: str, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        cond, args = scope.platform_sql("p")
        return self._rows(f"select o.id outcome_id, o.platform_id, o.status, o.decided_at, o.source, o.note, "
                          f"o.recorded_by, o.recorded_at, o.published from outcome o where o.platform_id = ? and "
                          f"exists (select 1 from platform_score p where p.platform_id = o.platform_id and {cond}) "
                          f"order by o.decided_at, o.id", [platform_id, *args])

    def unpublished(self, table: str, limit: int = 500) -> list[dict[str, Any]]:
        assert table in ("outcome", "tip")
        key = "id" if table == "outcome" else "receipt_id"
        return self._rows(f"select * from {table} where published = 0 order by {key} limit ?", (limit,))

    def mark_published(self, table: str, keys: list[Any]) -> None:
        assert table in ("outcome", "tip")
        key = "id" if table == "outcome" else "receipt_id"
        with self._tx() as c:
            c.executemany(f"update {table} set published = 1 where {key} = ?", [(k,) for k in keys])

    # ---- tips ----------------------------------------------------------------------------------
    def add_tip(self, platform_ref: str, text: str, contact: str | None) -> dict[str, Any]:
        receipt = "TIP-" + secrets.token_hex(8).upper()
        now = self.clock()
        pid = self.find_platform(platform_ref)
        with self._tx() as c:
            c.execute("insert into tip (receipt_id, received_at, platform_ref, platform_id, text, contact) "
                      "values (?,?,?,?,?,?)", (receipt, now, platform_ref, pid, text, contact))
            self._audit(c, "public", "tip.receive", f"tip:{receipt}", {"platform_id": pid})
        return {"receipt_id": receipt, "received_at": now}

    def tips(self, scope: Scope, *, platform_id: str | None = None, limit: int = 100, offset: int = 0
             ) -> tuple[int, list[dict[str, Any]]]:
        """Tips about platforms in scope, for supervisors (a custodian bank reads none: tipsters may name
        themselves); a tip naming no known platform is the PBoC branch's to read."""
        scope = scope.without_custodians()
        cond, args = scope.platform_sql("p")
        if scope.everything:
            base, bargs = "from tip t where 1=1", []
        else:
            base, bargs = (f"from tip t join platform_score p on p.platform_id = t.platform_id where {cond}", args)
        if platform_id is not None:
            base += " and t.platform_id = ?"
            bargs = [*bargs, platform_id]
        with self._lock:
            total = self.conn.execute(f"select count(*) {base}", bargs).fetchone()[0]
        rows = self._rows(f"select t.receipt_id, t.received_at, t.platform_ref, t.platform_id, t.text, t.contact "
                          f"{base} order by t.received_at desc, t.receipt_id limit ? offset ?",
                          [*bargs, limit, offset])
        return total, rows

    # ---- the desk: ranking with more filters, sparklines, kept reports -----------------------------
    _RANK_SORTS = {"score": "p.score", "name": "p.name", "jurisdiction": "p.jurisdiction", "kind": "p.kind",
                   "licence": "p.licence", "as_of": "p.as_of", "platform_id": "p.platform_id"}

    def ranking(self, scope: Scope = EVERYTHING, *, jurisdiction: str | None = None, kind: str | None = None,
                tier: str | None = None, licence: str | None = None, detector: str | None = None,
                custody: bool | None = None, key_targets: bool = False, sort: str = "score", descending: bool = True,
                limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Platforms in scope filtered (jurisdiction prefix, kind, tier, licence, a detector among the findings,
        in custody or not, registration keywords) in a chosen order; the scope is applied in SQL as everywhere."""
        cond, args = scope.platform_sql("p")
        where, wargs = [cond], list(args)
        if key_targets:
            where.append("p.keywords != ''")
        if jurisdiction is not None:
            where.append("p.jurisdiction like ?")
            wargs.append(jurisdiction_prefix(jurisdiction) + "%")
        for col, val in (("kind", kind), ("tier", tier), ("licence", licence)):
            if val is not None:
                where.append(f"p.{col} = ?")
                wargs.append(val)
        if detector is not None:
            where.append("exists (select 1 from jsonb_array_elements(p.body::jsonb -> 'findings') f "
                         "where f ->> 'detector' = ?)" if self.conn.dialect == "postgresql" else
                         "exists (select 1 from json_each(p.body, '$.findings') f "
                         "where json_extract(f.value, '$.detector') = ?)")  # JSON functions differ by dialect
            wargs.append(detector)
        if custody is not None:
            where.append("p.custodian_id is not null and p.custodian_id != ''" if custody
                         else "(p.custodian_id is null or p.custodian_id = '')")
        order = self._RANK_SORTS[sort] + (" desc" if descending else " asc")
        sql = " where " + " and ".join(where)
        with self._lock:
            total = self.conn.execute(f"select count(*) from platform_score p{sql}", wargs).fetchone()[0]
            rows = self.conn.execute(
                f"select p.body, p.custodian_id from platform_score p{sql} order by {order}, p.score desc, "
                f"p.platform_id limit ? offset ?", [*wargs, limit, offset]).fetchall()
        return total, [{**json.loads(r[0]), "custodian_id": r[1]} for r in rows]

    def recent_scores(self, platform_ids: list[str], n: int = 20) -> dict[str, list[dict[str, Any]]]:
        """The newest `n` scores of each platform named, oldest first (the caller names only platforms in scope)."""
        out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in platform_ids}
        if not platform_ids:
            return out
        rows = self._rows(f"select platform_id, as_of, score, tier from (select h.*, row_number() over (partition by "
                          f"platform_id order by as_of desc) rn from score_history h where platform_id in "
                          f"({','.join('?' * len(platform_ids))})) recent where rn <= ? order by platform_id, as_of",
                          [*platform_ids, n])
        for r in rows:
            out[r["platform_id"]].append({"as_of": r["as_of"], "score": r["score"], "tier": r["tier"]})
        return out

    def platform_facts(self, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        """Every platform in scope, the columns a report counts by (no findings, no evidence)."""
        cond, args = scope.platform_sql("p")
        return self._rows(f"select p.platform_id, p.name, p.kind, p.licence, p.jurisdiction, p.score, p.tier, "
                          f"p.disposition, p.as_of, p.custodian_id, p.keywords, p.departments from platform_score p "
                          f"where {cond} order by p.score desc, p.platform_id", args)

    def keep_report(self, kind: str, scope_key: str, actor: str, body: dict[str, Any]) -> int:
        """Keep a report (audited) so the next one of the same kind and scope can say what changed."""
        now = self.clock()
        with self._tx() as c:
            rid = c.execute("insert into report (kind, scope_key, created_at, actor, body) values (?,?,?,?,?) "
                            "returning report_id",
                            (kind, scope_key, now, actor, json.dumps(body, ensure_ascii=False))).fetchone()[0]
            self._audit(c, actor, f"report.{kind}.keep", f"report:{rid}", {"scope": scope_key})
        return int(rid)

    def reports_kept_by(self, actor: str, kind: str, *, since_ms: int) -> int:
        """How many reports of `kind` `actor` has kept since `since_ms` (the keeping limit is counted here, in the
        shared store, so that several API processes enforce one limit)."""
        rows = self._rows("select count(*) as n from report where actor = ? and kind = ? and created_at >= ?",
                          (actor, kind, since_ms))
        return int(rows[0]["n"])

    def kept_reports(self, kind: str, scope_key: str, *, limit: int = 50, with_body: bool = False
                     ) -> list[dict[str, Any]]:
        """Kept reports of one kind and scope, newest first."""
        cols = "report_id, kind, created_at, actor" + (", body" if with_body else "")
        rows = self._rows(f"select {cols} from report where kind = ? and scope_key = ? order by report_id desc "
                          f"limit ?", (kind, scope_key, limit))
        for r in rows:
            if with_body:
                r["body"] = json.loads(r["body"])
        return rows

    # ---- the audit log: append-only, hash-chained ------------------------------------------------
    def audit(self, actor: str, action: str, obj: str, detail: dict[str, Any] | None = None) -> None:
        with self._tx() as c:
            self._audit(c, actor, action, obj, detail or {})

    def _audit(self, c: Database, actor: str, action: str, obj: str, detail: dict[str, Any]) -> None:
        last = c.execute("select seq, hash from audit order by seq desc limit 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at = self.clock()
        text = json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        c.execute("insert into audit values (?,?,?,?,?,?,?,?)",
                  (seq, at, actor, action, obj, text, prev, _audit_hash(prev, seq, at, actor, action, obj, text)))

    def audit_entries(self, *, after: int = 0, limit: int = 100, actor: str | None = None,
                      action: str | None = None, obj: str | None = None) -> list[dict[str, Any]]:
        where, args = ["seq > ?"], [after]  # type: list[str], list[Any]
        for col, val in (("actor", actor), ("action", action), ("object", obj)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        rows = self._rows(f"select * from audit where {' and '.join(where)} order by seq limit ?", [*args, limit])
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows

    def verify_audit(self) -> list[dict[str, Any]]:
        """Every entry whose chain is broken: edited (hash differs), deleted or inserted (prev or seq differs)."""
        bad: list[dict[str, Any]] = []
        prev, expect = GENESIS, 1
        for r in self._iter_audit():
            problems = []
            if r["seq"] != expect:
                problems.append(f"expected entry {expect}, found {r['seq']} (entries missing)")
            if r["prev_hash"] != prev:
                problems.append("previous-hash link broken")
            if _audit_hash(r["prev_hash"], r["seq"], r["at"], r["actor"], r["action"], r["object"],
                           r["detail"]) != r["hash"]:
                problems.append("content does not match its hash (edited)")
            if problems:
                bad.append({"seq": r["seq"], "problems": problems})
            prev, expect = r["hash"], r["seq"] + 1
        return bad

    def audit_head(self) -> dict[str, Any] | None:
        """The newest entry's number and hash: kept outside the database (a ticket, a print-out, another
        system), it shows a truncated or wholly rewritten log that the chain alone cannot."""
        return self._one("select seq, hash, at from audit order by seq desc limit 1")

    def check_audit_head(self, seq: int, digest: str) -> str | None:
        row = self._one("select hash from audit where seq = ?", (seq,))
        if row is None:
            return f"entry {seq}, the recorded head, is gone: the log was cut short"
        if row["hash"] != digest:
            return f"entry {seq} no longer has the recorded head hash: the log was rewritten"
        return None

    def _iter_audit(self) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            rows = self._rows("select * from audit where seq > ? order by seq limit 1000", (after,))
            if not rows:
                return
            yield from rows
            after = rows[-1]["seq"]

    def audit_count(self) -> int:
        with self._lock:
            return int(self.conn.execute("select count(*) from audit").fetchone()[0])


class _Transaction:
    """`with store._tx() as c:` one write transaction, the writer lock taken up front (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: the schema's advisory lock), so a read-then-write inside it is never raced."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Database:
        self.store._lock.acquire()
        try:
            conn = self.store.conn
            conn.begin_write()
        except BaseException:
            self.store._lock.release()
            raise
        return conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type:
                self.store.conn.rollback()
            else:
                self.store.conn.commit()
        finally:
            self.store._lock.release()


_ALERT_COL_NAMES = ("alert_id", "platform_id", "state", "resolution", "episode", "last_seen", "updated_at",
                    "custodian_id", "severity", "body")
_ALERT_COLS = ", ".join(f"a.{c}" for c in _ALERT_COL_NAMES)


def _alert_view(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    body.pop("change", None)
    return {**body, "severity": row["severity"], "state": row["state"], "resolution": row["resolution"],
            "episode": row["episode"], "last_seen": row["last_seen"], "updated_at": row["updated_at"],
            "custodian_id": row["custodian_id"]}


def _key_view(row: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    out = {"key_id": row["key_id"], "name": row["name"], "role": row["role"],
           "departments": _uncsv(row["departments"]), "jurisdictions": _uncsv(row["jurisdictions"]),
           "custodian_id": row["custodian_id"], "everything": bool(row["everything"]),
           "created_at": row["created_at"], "created_by": row["created_by"], "revoked_at": row["revoked_at"],
           "last_used_at": row["last_used_at"]}
    if secret:
        out["salt"], out["hash"] = row["salt"], row["hash"]
    return out
