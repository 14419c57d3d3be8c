"""Checkpoints: fundwatch's own checksummed format (no pickle), written atomically, and a corrupt or
foreign one falls back to the previous one or a rebuild instead of refusing to start."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.checkpoint import Checkpoint, CheckpointError, decode_state, encode_state, load_checkpoint, save_checkpoint
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.sources import FileSource


@pytest.fixture(scope="module")
def state(small_world_dir):
    p = Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [], MemoryDeadLetters())
    p.run()
    return p


def test_a_checkpoint_round_trips_the_whole_state(state, tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, Checkpoint(state.ledger, state.assessor, {}, {("custody.transactions", 3): 1234}))
    cp = load_checkpoint(path)
    assert cp is not None and cp.positions == {("custody.transactions", 3): 1234}
    for name, value in vars(state.ledger).items():  # sets compare by value (their order is the hash seed's)
        if name != "graph_":
            assert getattr(cp.ledger, name) == value, name
    G, H = state.ledger.graph, cp.ledger.graph
    assert dict(G.nodes(data=True)) == dict(H.nodes(data=True))
    assert {(u, v): {k: list(x) if hasattr(x, "maxlen") else x for k, x in d.items()} for u, v, d in G.edges(data=True)} \
        == {(u, v): {k: list(x) if hasattr(x, "maxlen") else x for k, x in d.items()} for u, v, d in H.edges(data=True)}
    assert cp.ledger.stats() == state.ledger.stats()
    # the restored assessor (models refitted from their data) scores exactly as the original
    before = [(a.platform_id, a.score, a.tier) for a in state.assessor.assess(state.ledger)]
    after = [(a.platform_id, a.score, a.tier) for a in cp.assessor.assess(cp.ledger)]
    assert after == before
    assert cp.assessor.episodes_ == state.assessor.episodes_
    assert b"pickle" not in path.read_bytes()[:64] and path.read_bytes().startswith(b"FWCKPT\n")


def test_a_truncated_or_corrupt_checkpoint_falls_back_to_the_previous_one(state, tmp_path, caplog):
    path = tmp_path / "b.ckpt"
    save_checkpoint(path, Checkpoint(state.ledger, state.assessor, {}, {("t", 0): 1}))
    save_checkpoint(path, Checkpoint(state.ledger, state.assessor, {}, {("t", 0): 2}))
    assert Path(str(path) + ".prev").exists()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a crash mid-write that the rename did not protect against
    cp = load_checkpoint(path)
    assert cp is not None and cp.positions == {("t", 0): 1}
    assert "truncated or corrupt" in caplog.text
    # both gone bad: no checkpoint, the state is rebuilt (a warning, not a refusal to start)
    Path(str(path) + ".prev").write_bytes(b"FWCKPT\n" + json.dumps({"format": 99}).encode() + b"\n")
    assert load_checkpoint(path) is None
    assert "format 99" in caplog.text


def test_a_checkpoint_cannot_name_a_foreign_class():
    evil = {"$o": "os.system", "d": {}}
    with pytest.raises(CheckpointError, match="may not name"):
        decode_state(evil)
    with pytest.raises(CheckpointError):
        encode_state(object())


def test_tagged_containers_round_trip():
    from collections import deque

    import numpy as np

    value = {("a", 1): {1, 2}, "x": deque([1, 2, 3], maxlen=5), "t": (1, "b"), "$odd": 1, "f": frozenset({"z"}),
             "n": np.arange(6, dtype=float).reshape(2, 3), "nan": float("nan"), "b": b"\x00\xff"}
    back = decode_state(json.loads(json.dumps(encode_state(value))))
    assert back[("a", 1)] == {1, 2} and back["x"].maxlen == 5 and list(back["x"]) == [1, 2, 3]
    assert back["t"] == (1, "b") and back["$odd"] == 1 and back["f"] == frozenset({"z"})
    assert (back["n"] == value["n"]).all() and back["nan"] != back["nan"] and back["b"] == b"\x00\xff"
