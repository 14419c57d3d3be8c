"""Shared fixtures. Kafka tests use the broker `make test` starts with ops/kafka.sh (FUNDWATCH_TEST_BOOTSTRAP).

They never skip silently: without a broker they fail, unless FUNDWATCH_SKIP_KAFKA=1 is set on
purpose, and then the skip prints that reason.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ingest.simulator import simulate, write_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if os.environ.get("FUNDWATCH_SKIP_KAFKA") == "1":
        pytest.skip("FUNDWATCH_SKIP_KAFKA=1: Kafka tests skipped on request")
    bootstrap = os.environ.get("FUNDWATCH_TEST_BOOTSTRAP")
    if not bootstrap:
        res = subprocess.run([str(ROOT / "ops" / "kafka.sh"), "status"], capture_output=True, text=True)
        bootstrap = res.stdout.strip() if res.returncode == 0 else ""
    if not bootstrap:
        pytest.fail("no Kafka broker: run the tests with `make test` (it starts ops/kafka.sh), "
                    "or start one with `ops/kafka.sh start`")
    return bootstrap


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world with every scheme: 25 platforms over 75 days."""
    out = tmp_path_factory.mktemp("world")
    write_world(simulate(25, 75, seed=11), out)
    return out


# ---- the store's two backends -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The PostgreSQL server `make test` starts with ops/postgres.sh (FUNDWATCH_TEST_PG_DSN). Without one the
    postgres tests fail, unless FUNDWATCH_SKIP_PG=1 is set on purpose, and then the skip says so."""
    if os.environ.get("FUNDWATCH_SKIP_PG") == "1":
        pytest.skip("FUNDWATCH_SKIP_PG=1: PostgreSQL tests skipped on request")
    dsn = os.environ.get("FUNDWATCH_TEST_PG_DSN")
    if not dsn:
        res = subprocess.run([str(ROOT / "ops" / "postgres.sh"), "status"], capture_output=True, text=True)
        dsn = res.stdout.strip() if res.returncode == 0 else ""
    if not dsn:
        pytest.fail("no PostgreSQL: run the tests with `make test` (it starts ops/postgres.sh), "
                    "or start one with `ops/postgres.sh start`")
    return dsn


def pg_schema_dsn(dsn: str, schema: str) -> str:
    """The same database with `schema` first on the search path: the store's tables live there."""
    from urllib.parse import quote

    return f"{dsn}{'&' if '?' in dsn else '?'}options={quote(f'-csearch_path={schema}')}"


def raw_sql(target: str, *statements: str) -> None:
    """Statements on a connection of their own, outside the store: someone with a database shell."""
    from service.db import is_dsn

    if is_dsn(target):
        import psycopg

        with psycopg.connect(target, autocommit=True) as pg:
            for s in statements:
                pg.execute(s)  # type: ignore[call-overload]
        return
    import sqlite3

    lite = sqlite3.connect(target)
    for s in statements:
        lite.executescript(s)
    lite.close()


def _store_target(request: pytest.FixtureRequest, tmp: Path, backend: str | None = None) -> str:
    """A fresh, empty store of the requested backend: a SQLite file, or a PostgreSQL schema of its own
    (dropped afterwards) in the project-started server."""
    if (backend or request.param) == "sqlite":
        return str(tmp / "store.db")
    dsn = request.getfixturevalue("pg_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    raw_sql(dsn, f"create schema {schema}")
    request.addfinalizer(lambda: raw_sql(dsn, f"drop schema {schema} cascade"))
    return pg_schema_dsn(dsn, schema)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store's target (file or DSN) per test, once for each backend."""
    return _store_target(request, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh store's target shared by a module's tests, once for each backend."""
    return _store_target(request, tmp_path_factory.mktemp("store"))


@pytest.fixture
def pg_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh PostgreSQL store's DSN (a schema of its own), for tests about PostgreSQL only."""
    return _store_target(request, tmp_path, "postgres")
