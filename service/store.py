"""Where scores and alerts live for the API: SQLite (a file, or :memory: in tests).

It is also a pipeline Output: the loop publishes into it like into Kafka.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from detectors.assess import Assessment
from detectors.base import SEVERITIES

__all__ = ["Store", "jurisdiction_prefix"]


def jurisdiction_prefix(code: str) -> str:
    """Administrative division codes nest: 320000 province, 320700 city, 320703 county."""
    if len(code) == 6 and code.endswith("0000"):
        return code[:2]
    if len(code) == 6 and code.endswith("00"):
        return code[:4]
    return code

_SCHEMA = """
create table if not exists platform_score (
  platform_id text primary key, name text, kind text, licence text, jurisdiction text,
  score real, tier text, disposition text, as_of integer, keywords text, body text not null);
create index if not exists platform_score_rank on platform_score(score desc);
create table if not exists alert (
  alert_id text primary key, platform_id text, jurisdiction text, kind text, detector text, severity text,
  severity_rank integer, departments text, raised_at integer, body text not null);
create index if not exists alert_time on alert(raised_at desc);
"""


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.executescript(_SCHEMA)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- the pipeline writes ---------------------------------------------------------------------
    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        with self._lock, self.conn:
            self.conn.executemany(
                "insert or replace into platform_score values (?,?,?,?,?,?,?,?,?,?,?)",
                [(a.platform_id, a.name, a.kind, a.licence, a.jurisdiction, a.score, a.tier, a.disposition, a.as_of,
                  ",".join(a.registration_keywords), json.dumps(a.as_dict(), ensure_ascii=False))
                 for a in assessments])
            self.conn.executemany(
                "insert or replace into alert values (?,?,?,?,?,?,?,?,?,?)",
                [(al["alert_id"], al["platform_id"], al["jurisdiction"], al["kind"], al["detector"], al["severity"],
                  SEVERITIES.index(al["severity"]), "," + ",".join(al["lead_departments"]) + ",", al["raised_at"],
                  json.dumps(al, ensure_ascii=False)) for al in alerts])

    def flush(self) -> None:
        pass

    # ---- the API reads ---------------------------------------------------------------------------
    def platforms(self, *, jurisdiction: str | None = None, kind: str | None = None, tier: str | None = None,
                  key_targets: bool = False, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        where: list[str] = []
        args: list[Any] = []
        if key_targets:
            where.append("keywords != ''")
        if jurisdiction is not None:
            where.append("jurisdiction like ?")
            args.append(jurisdiction_prefix(jurisdiction) + "%")
        for col, val in (("kind", kind), ("tier", tier)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        cond = (" where " + " and ".join(where)) if where else ""
        with self._lock:
            total = self.conn.execute(f"select count(*) from platform_score{cond}", args).fetchone()[0]
            rows = self.conn.execute(
                f"select body from platform_score{cond} order by score desc, platform_id limit ? offset ?",
                [*args, limit, offset]).fetchall()
        return total, [json.loads(r[0]) for r in rows]

    def platform(self, platform_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.conn.execute("select body from platform_score where platform_id = ?", (platform_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def alerts(self, *, jurisdiction: str | None = None, department: str | None = None,
               platform_id: str | None = None, min_severity: str | None = None, limit: int = 100,
               offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        where: list[str] = []
        args: list[Any] = []
        if jurisdiction is not None:
            where.append("jurisdiction like ?")
            args.append(jurisdiction_prefix(jurisdiction) + "%")
        if department is not None:
            where.append("departments like ?")
            args.append(f"%,{department},%")
        if platform_id is not None:
            where.append("platform_id = ?")
            args.append(platform_id)
        if min_severity is not None:
            where.append("severity_rank >= ?")
            args.append(SEVERITIES.index(min_severity))
        cond = (" where " + " and ".join(where)) if where else ""
        with self._lock:
            total = self.conn.execute(f"select count(*) from alert{cond}", args).fetchone()[0]
            rows = self.conn.execute(f"select body from alert{cond} order by raised_at desc, alert_id limit ? offset ?",
                                     [*args, limit, offset]).fetchall()
        return total, [json.loads(r[0]) for r in rows]
