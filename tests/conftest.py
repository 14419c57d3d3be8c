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
