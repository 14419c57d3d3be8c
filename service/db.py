"""The two databases behind the one store, as one small connection type each.

The store writes one SQL: SQLite's spelling (`?` placeholders, `integer`, `real`, `integer primary
key autoincrement`, a `raise(abort, ...)` trigger) restricted to what PostgreSQL also understands
(`insert ... on conflict ... do update`, `returning`, `case` instead of two-argument `max`). This
layer turns it into PostgreSQL's where the two differ, so every method of the store is written once:

- placeholders: `?` becomes `%s` (and a literal `%` becomes `%%`);
- migrations: integers are 64-bit (`bigint`: epoch milliseconds do not fit 32 bits), `real` is
  `double precision`, `blob` is `bytea`, autoincrement is an identity column, an append-only
  trigger becomes a PL/pgSQL function and a row trigger (plus a TRUNCATE guard, which SQLite has no
  need of);
- the writer lock: SQLite's `begin immediate` takes the database's one write lock; PostgreSQL's
  write transactions take one transaction-scoped advisory lock per schema first, so writers from
  several processes run one at a time as they do on SQLite. That is what keeps the audit chain
  from forking (each entry reads the head it extends), makes outbox sequence numbers follow commit
  order (a reader that has seen seq n never later finds a smaller one committed; only a rolled-back
  transaction leaves a gap, in PostgreSQL, whose sequences do not roll back), and makes the
  read-then-write alert upsert safe across workers;
- the schema version: a `schema_version` table on both (SQLite also keeps `pragma user_version`
  in step, as older fundwatch versions read it).

Nothing connects at import time; a connection is opened by the store on first use.
"""
from __future__ import annotations

import os
import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

__all__ = ["Database", "Cursor", "SQLiteDatabase", "PostgresDatabase", "open_database", "is_dsn", "pg_sql",
           "pg_ddl", "redact"]

# advisory lock keys (first half of the two-int form); the second half is the schema's hash
_WRITE_LOCK = 0x46570001
_MIGRATE_LOCK = 0x46570002
LOCK_TIMEOUT_S = 30  # as long as SQLite's busy timeout: a writer waits this long for the lock, then fails


def is_dsn(target: str) -> bool:
    """A PostgreSQL connection URI rather than a SQLite file name."""
    return target.startswith(("postgresql://", "postgres://"))


def redact(target: str) -> str:
    """A store target fit for a log line: a DSN without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", target) if is_dsn(target) else target


class Cursor(Protocol):
    """What the store uses of a DB-API cursor; sqlite3's and psycopg's both are one."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """One connection with SQLite's placeholders on both backends, and the writer lock."""

    dialect: str
    integrity_errors: tuple[type[Exception], ...]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def begin_write(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def migrate(self, migrations: Sequence[str]) -> None: ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


def open_database(target: str) -> Database:
    """A SQLite file (or ':memory:') or a PostgreSQL DSN."""
    return PostgresDatabase(target) if is_dsn(target) else SQLiteDatabase(target)


# ---- SQLite ------------------------------------------------------------------------------------------
class SQLiteDatabase:
    dialect = "sqlite"
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if not Path(path).exists():  # tip contacts and key hashes: readable by the service only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.conn = sqlite3.connect(path, check_same_thread=False, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        if path != ":memory:":
            self.conn.execute("pragma journal_mode=wal")
        self.conn.execute(f"pragma busy_timeout={LOCK_TIMEOUT_S * 1000}")
        self.conn.execute("pragma synchronous=normal")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def begin_write(self) -> None:
        self.conn.execute("begin immediate")  # the write lock up front, not at the first write

    def commit(self) -> None:
        self.conn.execute("commit")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("rollback")

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("select version from schema_version").fetchone()
        except sqlite3.OperationalError:  # a database from before the table: the pragma says
            row = None
        return int(row[0]) if row else int(self.conn.execute("pragma user_version").fetchone()[0])

    def migrate(self, migrations: Sequence[str]) -> None:
        """Each migration once, in order, under the write lock (two processes starting together apply
        each once); the version is read again once the lock is held. A database from before the
        schema_version table starts from its `pragma user_version`."""
        try:
            if int(self.conn.execute("select version from schema_version").fetchone()[0]) >= len(migrations):
                return
        except (sqlite3.OperationalError, TypeError):  # no table yet, or no row
            pass
        self.begin_write()
        try:
            self.conn.execute("create table if not exists schema_version (version integer not null)")
            row = self.conn.execute("select version from schema_version").fetchone()
            if row is None:
                version = int(self.conn.execute("pragma user_version").fetchone()[0])
                self.conn.execute("insert into schema_version values (?)", (version,))
            else:
                version = int(row[0])
            for i, script in enumerate(migrations[version:], start=version + 1):
                for stmt in _sqlite_statements(script):
                    self.conn.execute(stmt)
                self.conn.execute("update schema_version set version = ?", (i,))
                self.conn.execute(f"pragma user_version = {i}")
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def close(self) -> None:
        self.conn.close()


def _sqlite_statements(script: str) -> list[str]:
    """A script's statements (a trigger's body keeps its semicolons)."""
    out, cur = [], ""
    for line in script.splitlines(keepends=True):
        cur += line
        if sqlite3.complete_statement(cur):
            out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


# ---- PostgreSQL ----------------------------------------------------------------------------------------
class PostgresDatabase:
    """One psycopg 3 connection in autocommit mode: a read is its own statement, a write transaction
    is opened by `begin_write`, which takes the schema's writer lock first."""

    dialect = "postgresql"

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.dsn = dsn
        self.integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        """Connected on first use, and again after the server dropped the connection (a restart of
        the database is one failed request, not a dead service)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            from psycopg.conninfo import conninfo_to_dict

            given = str(conninfo_to_dict(self.dsn).get("options") or "")  # e.g. a search_path: kept
            self._conn = self._psycopg.connect(self.dsn, autocommit=True,
                                               options=f"{given} -c lock_timeout={LOCK_TIMEOUT_S * 1000}".strip())
        return self._conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        if args:
            cur: Cursor = self.conn.execute(pg_sql(sql), list(args))
        else:
            cur = self.conn.execute(sql)
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [list(r) for r in rows]
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(pg_sql(sql), rows)

    def begin_write(self) -> None:
        self.conn.execute("begin")
        try:
            self.conn.execute("select pg_advisory_xact_lock(%s, hashtext(current_schema()))", [_WRITE_LOCK])
        except BaseException:
            self.rollback()
            raise

    def commit(self) -> None:
        self.conn.execute("commit")

    def rollback(self) -> None:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            self._conn.execute("rollback")

    def schema_version(self) -> int:
        exists = self.conn.execute("select to_regclass('schema_version')").fetchone()[0]
        if exists is None:
            return 0
        row = self.conn.execute("select version from schema_version").fetchone()
        return int(row[0]) if row else 0

    def migrate(self, migrations: Sequence[str]) -> None:
        """The same versioned list as SQLite, translated; PostgreSQL's DDL is transactional, so a
        migration applies whole or not at all. Workers starting together wait for one another."""
        if self.schema_version() >= len(migrations):
            return
        self.conn.execute("begin")
        try:
            self.conn.execute("select pg_advisory_xact_lock(%s, hashtext(current_schema()))", [_MIGRATE_LOCK])
            self.conn.execute("create table if not exists schema_version (version integer not null)")
            row = self.conn.execute("select version from schema_version").fetchone()
            if row is None:
                self.conn.execute("insert into schema_version values (0)")
            version = int(row[0]) if row else 0
            for i, script in enumerate(migrations[version:], start=version + 1):
                self.conn.execute(pg_ddl(script))
                self.conn.execute("update schema_version set version = %s", [i])
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """`?` placeholders outside string literals become `%s`; a literal `%` becomes `%%`."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


_TRIGGER = re.compile(r"create trigger (\w+) before (update|delete) on (\w+) begin\s+select raise\(abort,\s*"
                      r"'([^']*)'\);\s*end;", re.IGNORECASE)
_TYPES = ((re.compile(r"\binteger primary key autoincrement\b", re.I), "bigint generated by default as identity primary key"),
          (re.compile(r"\binteger\b", re.I), "bigint"),
          (re.compile(r"\breal\b", re.I), "double precision"),
          (re.compile(r"\bblob\b", re.I), "bytea"))  # bytes in, bytes out on both
_SQLITE_ONLY = re.compile(r"\b(autoincrement|pragma|insert or|without rowid|create trigger|raise\()", re.I)


def _pg_trigger(m: re.Match[str]) -> str:
    name, op, table, message = m.groups()
    fn = f"{name}_refuse"
    guard = (f"create or replace function {fn}() returns trigger language plpgsql as $$ begin "
             f"raise exception using message = '{message}', errcode = 'integrity_constraint_violation'; end $$;\n"
             f"create trigger {name} before {op} on {table} for each row execute function {fn}();")
    if op.lower() == "delete":  # TRUNCATE empties a table without deleting rows one by one
        guard += f"\ncreate trigger {name}_truncate before truncate on {table} for each statement execute function {fn}();"
    return guard


def pg_ddl(script: str) -> str:
    """A migration written in SQLite's spelling, as PostgreSQL DDL. A construct with no translation here
    fails loudly rather than being passed on to fail (or worse, mean something else) in PostgreSQL."""
    triggers: list[str] = []

    def keep(m: re.Match[str]) -> str:
        triggers.append(_pg_trigger(m))
        return f"\x00{len(triggers) - 1}\x00"

    body = _TRIGGER.sub(keep, script)
    for pattern, repl in _TYPES:
        body = pattern.sub(repl, body)
    left = _SQLITE_ONLY.search(body)
    if left:
        raise ValueError(f"migration uses SQLite-only {left.group(0)!r} with no PostgreSQL translation: {body[:200]!r}")
    return re.sub(r"\x00(\d+)\x00", lambda m: triggers[int(m.group(1))], body)
