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
    for name, value in state.ledger.__getstate__().items():  # sets compare by value (their order is the hash seed's)
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


def _graph_view(G):
    """Nodes and edges with their attributes, in order (deques as lists with their maxlen)."""
    def plain(d):
        return {k: (list(x), x.maxlen) if hasattr(x, "maxlen") else x for k, x in d.items()}
    return [(n, list(d.items())) for n, d in G.nodes(data=True)], [(u, v, list(plain(d).items()))
                                                                     for u, v, d in G.edges(data=True)]


def test_the_compact_encoding_decodes_to_what_the_generic_one_does(state, tmp_path):
    """Format 4 writes the graph and record tables by column; it must give back exactly what format 3's
    element-by-element encoding gives back, node and edge order and attribute order included."""
    cp = Checkpoint(state.ledger, state.assessor, {}, {})
    compact = decode_state(json.loads(json.dumps(encode_state(cp))))
    generic = decode_state(json.loads(json.dumps(encode_state(cp, compact=False))))
    assert _graph_view(compact.ledger.graph) == _graph_view(generic.ledger.graph) == _graph_view(state.ledger.graph)
    for name, value in state.ledger.__getstate__().items():  # the fold index is derived, not saved
        if name != "graph_":
            assert getattr(compact.ledger, name) == getattr(generic.ledger, name) == value, name
    assert "$g" in json.dumps(encode_state(cp)) and "$tab" in json.dumps(encode_state(cp))


def test_a_format_3_checkpoint_still_loads(state, tmp_path):
    import hashlib
    import zlib

    body = zlib.compress(json.dumps(encode_state(Checkpoint(state.ledger, state.assessor, {}, {("t", 0): 7}),
                                                 compact=False)).encode(), 1)
    header = {"format": 3, "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    path = tmp_path / "old.ckpt"
    path.write_bytes(b"FWCKPT\n" + json.dumps(header).encode() + b"\n" + body)
    cp = load_checkpoint(path)
    assert cp is not None and cp.positions == {("t", 0): 7} and cp.ledger.stats() == state.ledger.stats()


def test_a_graph_off_the_fixed_layout_round_trips_exactly(tmp_path):
    """Odd nodes and edges, and columns that do not fit int64, fall back to the generic encoding."""
    from collections import deque

    import networkx as nx

    def flow(**over):
        e = dict(kind="flow", amount=5, count=1, first_ts=1, last_ts=2, by_type=[5] + [0] * 8, buckets={3: [5, 1] + [0] * 6},
                 recent=deque(["t1"], maxlen=8), origin=[0] * 6, interest=0)
        e.update(over)
        return e

    def account(**over):
        d = dict(kind="account", balance=0, comp=[0] * 6, role="PLATFORM_OPERATING", platform="P1", holder="H1")
        d.update(over)
        return d

    cases = {
        "regular": ({}, {}),
        "extra node attribute": ({"note": "x"}, {}),
        "float amount": ({}, {"amount": 5.5}),
        "beyond 64 bits": ({"balance": 2**70}, {}),
        "bool count": ({}, {"count": True}),
        "no maxlen": ({}, {"recent": deque(["t1", "t2"])}),
        "ragged bucket": ({}, {"buckets": {3: [1, 2], 4: [1, 2, 3]}}),
    }
    for what, (node_over, edge_over) in cases.items():
        g = nx.DiGraph(name="g")
        g.add_node(("platform", "P1"), kind="platform")
        g.add_node("A1", **account(**node_over))
        g.add_node("A2", **account())
        g.add_node(("holder", "H1"), kind="holder")
        g.add_node(7, kind="other")
        g.add_edge(("platform", "P1"), ("holder", "H1"), kind="related")
        g.add_edge(("holder", "H1"), "A1", kind="holds")
        g.add_edge("A1", "A2", **flow(**edge_over))
        g.add_edge("A2", 7, weight=1.5)
        path = tmp_path / f"{what}.ckpt"
        save_checkpoint(path, Checkpoint(g, None, {}, {}))
        back = load_checkpoint(path)
        assert back is not None, what
        assert _graph_view(back.ledger) == _graph_view(g) and back.ledger.graph == {"name": "g"}, what
        for u, v, d in g.edges(data=True):  # types too: 5.5 stays a float, True stays a bool
            assert [type(x) for x in back.ledger.edges[u, v].values()] == [type(x) for x in d.values()], what
        assert [type(x) for x in back.ledger.nodes["A1"].values()] == [type(x) for x in g.nodes["A1"].values()], what


def test_an_array_reaching_beyond_the_body_is_refused():
    with pytest.raises(CheckpointError, match="beyond"):
        decode_state({"$g": {"arrays": {"nk": {"$bin": [0, 800], "t": "<i8", "s": [100]}}}}, b"\x00" * 16)
