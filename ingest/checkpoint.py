"""Checkpoints: the ledger, the assessor's state and the input positions, saved together.

A restart loads the newest good checkpoint and resumes reading right after the positions it
holds; without one, it reads every input topic from the beginning (the state is rebuilt from the
log: custody.* topics keep their history). Offsets committed to Kafka are for lag monitoring;
the checkpoint is what the state agrees with.

The format is fundwatch's own, not pickle (a checkpoint file must not be able to run code):
`FWCKPT` and a JSON header line (format, length and SHA-256 of the body), then the body, zlib-
compressed JSON in which containers Python's JSON lacks are tagged (tuples, sets, deques, dicts
with non-string keys, bytes, numpy arrays) and objects are allowed only from a fixed list of
fundwatch's own classes. Two shapes that make up most of a checkpoint are written column by column
instead of element by element (format 4): the ledger's graph (`$g`: its nodes and edges have the
fixed layout graph/ledger.py gives them; integer columns are int64 arrays) and dicts or lists of one
record class (`$tab`: one row of field values per record). Anything that does not fit those layouts
is written the generic way, so the round trip stays exact; format 3 files still read. Fitted outlier models are stored as the data they were fitted on and
refitted on load (the fit is seeded, so the model is the same). Written to a temporary file,
fsynced, the previous checkpoint kept as `.prev`, renamed into place and the directory fsynced;
a file that is truncated, corrupt or of another format is skipped with a warning for the
previous one, and with neither the state is rebuilt.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import gc
import hashlib
import itertools
import json
import logging
import math
import operator
import os
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import networkx as nx
import numpy as np

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT", "encode_state", "decode_state",
           "CheckpointError"]

FORMAT = 4  # 3: own format, no pickle; 4: the graph and record tables by column
READABLE = (3, 4)  # 4 only adds tags to 3, so a format-3 checkpoint still decodes
MAGIC = b"FWCKPT"
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: truncated, corrupt, of another format, or naming a class
    that is not fundwatch's."""


@dataclass
class Checkpoint:
    ledger: Any
    assessor: Any
    pending: dict[str, Any]
    positions: dict[tuple[str, int], int]  # (topic, partition) -> next offset to read
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # outputs' restart data, and such
    format: int = FORMAT


def _allowed() -> dict[str, type]:
    """The only classes a checkpoint may name (imported here, not at module import)."""
    from detectors import assess
    from detectors.base import DetectorParams
    from detectors.scoring import OutlierEnsemble
    from graph.ledger import Ledger, ListingBook
    from ingest.decode import Envelope, RawMessage
    from schemas import records

    classes: list[type] = [Ledger, ListingBook, assess.Assessor, OutlierEnsemble, Envelope, RawMessage, Checkpoint,
                           DetectorParams, *records.RECORD_TYPES.values()]
    classes += [c for c in vars(assess).values() if isinstance(c, type) and c.__module__ == assess.__name__
                and dataclasses.is_dataclass(c)]
    return {f"{c.__module__}.{c.__qualname__}": c for c in classes}


# ---- encoding ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Encoding and decoding allocate millions of small containers, none of them cyclic garbage; with the
    collector on, each allocation burst triggers full collections over the whole state (half the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def encode_state(obj: Any, *, compact: bool = True) -> Any:
    """A JSON-able form of fundwatch's state; `decode_state` turns it back. `compact=False` writes
    everything the generic, element-by-element way (format 3's encoding; tests compare the two)."""
    allowed = {v: k for k, v in _allowed().items()}
    blobs: list[bytes] = []
    with _gc_paused():
        data = _enc(obj, allowed, blobs if compact else None)
    if blobs:
        data = {"$blobs": [base64.b64encode(b).decode() for b in blobs], "v": data}
    return data


def _encode_body(obj: Any) -> tuple[bytes, int]:
    """The body before compression: JSON, then the graph's integer columns as raw bytes (no base64, no
    JSON parsing of them); returns it and the JSON part's length."""
    allowed = {v: k for k, v in _allowed().items()}
    blobs: list[bytes] = []
    with _gc_paused():
        text = json.dumps(_enc(obj, allowed, blobs), separators=(",", ":")).encode("utf-8")
    return b"".join([text, *blobs]), len(text)


_PLAIN = (str, int, bool, type(None))


def _enc(o: Any, allowed: dict[type, str], blobs: list[bytes] | None = None) -> Any:
    t = type(o)
    if t is str or t is int or t is bool or o is None:
        return o
    if t is list:
        if all(type(x) in _PLAIN for x in o):  # the common case (day buckets, compositions): as it is
            return o
        return [_enc(x, allowed, blobs) for x in o]
    if t is dict:
        if blobs is not None and len(o) > 1:
            table = _enc_table(list(o.values()), allowed, blobs)
            if table is not None:
                return {"$tab": table, "k": _enc(list(o), allowed, blobs)}
        if all(type(k) is str and k[:1] != "$" for k in o):
            return {k: _enc(v, allowed, blobs) for k, v in o.items()}
        return {"$d": [[_enc(k, allowed, blobs), _enc(v, allowed, blobs)] for k, v in o.items()]}
    if isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return o if np.isfinite(o) else {"$f": repr(o)}
    if isinstance(o, np.generic):
        return _enc(o.item(), allowed, blobs)
    if isinstance(o, list):
        return [_enc(x, allowed, blobs) for x in o]
    if isinstance(o, tuple):
        return {"$tu": [_enc(x, allowed, blobs) for x in o]}
    if isinstance(o, frozenset):
        return {"$fs": [_enc(x, allowed, blobs) for x in sorted(o, key=repr)]}
    if isinstance(o, set):
        return {"$set": [_enc(x, allowed, blobs) for x in sorted(o, key=repr)]}
    if isinstance(o, deque):
        return {"$dq": [_enc(x, allowed, blobs) for x in o], "m": o.maxlen}
    if isinstance(o, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in o):
            return {k: _enc(v, allowed, blobs) for k, v in o.items()}
        return {"$d": [[_enc(k, allowed, blobs), _enc(v, allowed, blobs)] for k, v in o.items()]}
    if isinstance(o, bytes):
        return {"$b": base64.b64encode(o).decode()}
    if isinstance(o, np.ndarray):
        a = np.ascontiguousarray(o)
        return {"$np": base64.b64encode(a.tobytes()).decode(), "t": a.dtype.str, "s": list(a.shape)}
    if isinstance(o, nx.DiGraph):
        if blobs is not None and type(o) is nx.DiGraph:
            g = _enc_graph(o, allowed, blobs)
            if g is not None:
                return {"$g": g}
        return {"$nx": {"nodes": [[_enc(n, allowed, blobs), _enc(d, allowed, blobs)] for n, d in o.nodes(data=True)],
                        "edges": [[_enc(u, allowed, blobs), _enc(v, allowed, blobs), _enc(d, allowed, blobs)]
                                  for u, v, d in o.edges(data=True)], "graph": _enc(dict(o.graph), allowed, blobs)}}
    name = allowed.get(type(o))
    if name is None:
        raise CheckpointError(f"{type(o).__module__}.{type(o).__qualname__} is not a checkpoint class")
    from detectors.scoring import OutlierEnsemble

    if isinstance(o, OutlierEnsemble):  # the data it was fitted on; refitted on load
        return {"$o": name, "fit": _enc(getattr(o, "X_fit_", None), allowed, blobs),
                "d": _enc({"feature_names": o.feature_names, "directions": o.directions, "random_state": o.random_state,
                           "n_estimators": o.n_estimators, "use_hbos": o.use_hbos}, allowed, blobs)}
    if dataclasses.is_dataclass(o):
        state = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    else:
        state = dict(o.__getstate__())  # Ledger leaves its derived indexes out (they are rebuilt)
    return {"$o": name, "d": _enc(state, allowed, blobs)}


def decode_state(data: Any, blob: bytes = b"") -> Any:
    """The state `encode_state` (or `_encode_body`, with the bytes after its JSON as `blob`) wrote."""
    if type(data) is dict and "$blobs" in data:
        blob = b"".join(base64.b64decode(b) for b in data["$blobs"])
        data = data["v"]
    with _gc_paused():
        return _dec(data, _allowed(), blob)


def _dec(o: Any, allowed: dict[str, type], blob: bytes = b"") -> Any:
    t = type(o)
    if t is list:
        if all(type(x) in _PLAIN for x in o):
            return o
        return [_dec(x, allowed, blob) for x in o]
    if t is not dict:
        return o
    if len(o) == 0 or not next(iter(o)).startswith("$"):
        return {k: _dec(v, allowed, blob) for k, v in o.items()}
    if "$f" in o:
        return float(o["$f"])
    if "$tu" in o:
        return tuple(_dec(x, allowed, blob) for x in o["$tu"])
    if "$fs" in o:
        return frozenset(_dec(x, allowed, blob) for x in o["$fs"])
    if "$set" in o:
        return {_dec(x, allowed, blob) for x in o["$set"]}
    if "$dq" in o:
        return deque((_dec(x, allowed, blob) for x in o["$dq"]), maxlen=o["m"])
    if "$d" in o:
        return {_dec(k, allowed, blob): _dec(v, allowed, blob) for k, v in o["$d"]}
    if "$b" in o:
        return base64.b64decode(o["$b"])
    if "$tab" in o:
        keys = _dec(o["k"], allowed, blob)
        values = _dec_table(o["$tab"], allowed, blob)
        if len(keys) != len(values):
            raise CheckpointError("a record table whose keys and rows do not match")
        return dict(zip(keys, values))
    if "$g" in o:
        return _dec_graph(o["$g"], allowed, blob)
    if "$np" in o:
        return np.frombuffer(base64.b64decode(o["$np"]), dtype=np.dtype(o["t"])).reshape(o["s"]).copy()
    if "$nx" in o:
        g = nx.DiGraph()
        g.graph.update(_dec(o["$nx"].get("graph", {}), allowed, blob))
        g.add_nodes_from((_dec(n, allowed, blob), _dec(d, allowed, blob)) for n, d in o["$nx"]["nodes"])
        g.add_edges_from((_dec(u, allowed, blob), _dec(v, allowed, blob), _dec(d, allowed, blob)) for u, v, d in o["$nx"]["edges"])
        return g
    if "$o" in o:
        cls = allowed.get(o["$o"])
        if cls is None:
            raise CheckpointError(f"a checkpoint may not name {o['$o']!r}")
        state = _dec(o["d"], allowed, blob)
        from detectors.scoring import OutlierEnsemble

        if cls is OutlierEnsemble:
            model = OutlierEnsemble(**state)
            fit = _dec(o.get("fit"), allowed, blob)
            return model.fit(fit) if fit is not None else model
        if dataclasses.is_dataclass(cls):
            return cls(**state)
        # Ledger, Assessor: their state over their constructor's defaults, so a checkpoint written before an
        # attribute existed restores with that attribute's default
        obj: Any = cls()
        obj.__dict__.update(state)
        return obj
    raise CheckpointError(f"unknown tag in {sorted(o)[:3]}")


# ---- compact shapes: record tables and the ledger's graph, by column ------------------------------------
_ROW_PLAIN = {str, int, bool, type(None)}


def _plain_values(values: Any) -> bool:
    """True if every value round-trips through JSON as it is: str, int, bool, None, finite floats."""
    types = set(map(type, values))
    if float in types:
        types.discard(float)
        if not all(map(math.isfinite, [x for x in values if type(x) is float])):
            return False
    return types <= _ROW_PLAIN


def _enc_table(values: list[Any], allowed: dict[type, str], blobs: list[bytes]) -> dict[str, Any] | None:
    """Records of one allowed dataclass, column by column (`cls(*row)` rebuilds them), or None. A column of
    plain values is written as it is, a column of records (None allowed) as a table of its own, any other
    column value by value."""
    cls = type(values[0])
    name = allowed.get(cls)
    if name is None or not dataclasses.is_dataclass(cls) or set(map(type, values)) != {cls}:
        return None
    fields = dataclasses.fields(cls)
    if not fields or not all(f.init for f in fields):
        return None
    cols: list[dict[str, Any]] = []
    for f in fields:
        col = list(map(operator.attrgetter(f.name), values))
        if _plain_values(col):
            cols.append({"p": col})
            continue
        present = [v for v in col if v is not None]
        nested = _enc_table(present, allowed, blobs) if present else None
        if nested is not None:
            cols.append({"t": nested, "none": [i for i, v in enumerate(col) if v is None]})
        else:
            cols.append({"g": [_enc(v, allowed, blobs) for v in col]})
    return {"c": name, "n": len(values), "cols": cols}


def _dec_table(o: dict[str, Any], allowed: dict[str, type], blob: bytes) -> list[Any]:
    cls = allowed.get(o["c"])
    if cls is None or not dataclasses.is_dataclass(cls):
        raise CheckpointError(f"a checkpoint may not name {o['c']!r}")
    cols: list[list[Any]] = []
    for c in o["cols"]:
        if "p" in c:
            col = c["p"]
        elif "t" in c:
            present = iter(_dec_table(c["t"], allowed, blob))
            gaps = set(c["none"])
            col = [None if i in gaps else next(present) for i in range(o["n"])]
        else:
            col = [_dec(v, allowed, blob) for v in c["g"]]
        if len(col) != o["n"]:
            raise CheckpointError("a record table with columns of different lengths")
        cols.append(col)
    return list(itertools.starmap(cls, zip(*cols))) if cols else []


# node and edge layouts as graph/ledger.py writes them (attribute order included)
_ACCOUNT_KEYS = ("kind", "balance", "comp", "role", "platform", "holder")
_FLOW_KEYS = ("kind", "amount", "count", "first_ts", "last_ts", "by_type", "buckets", "recent", "origin", "interest")
_N_ACCOUNT, _N_HOLDER, _N_PLATFORM, _N_OTHER = 0, 1, 2, 3
_E_FLOW, _E_HOLDS, _E_RELATED, _E_OTHER = 0, 1, 2, 3


class _Irregular(Exception):
    """A column that does not fit its fixed type: the graph is written the generic way instead."""


def _ints(values: list[Any]) -> np.ndarray:
    """Python ints as an int64 array (exact), or _Irregular (a float, a bool, None, beyond 64 bits)."""
    if values and set(map(type, values)) != {int}:
        raise _Irregular
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise _Irregular from None


def _int_rows(rows: list[list[Any]]) -> np.ndarray:
    """Equal-length lists of ints as a 2-D int64 array."""
    if set(map(type, rows)) - {list} or len(set(map(len, rows))) > 1:
        raise _Irregular
    width = len(rows[0]) if rows else 0
    flat = _ints(list(itertools.chain.from_iterable(rows)))
    return flat.reshape(len(rows), width)


def _strs(values: list[Any]) -> list[str]:
    if values and set(map(type, values)) != {str}:
        raise _Irregular
    return values


def _blob_ref(a: np.ndarray, blobs: list[bytes]) -> dict[str, Any]:
    """An array written after the JSON, little-endian; the JSON holds where, its type and shape."""
    data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    ref = {"$bin": [sum(map(len, blobs)), len(data)], "t": a.dtype.newbyteorder("<").str, "s": list(a.shape)}
    blobs.append(data)
    return ref


def _from_blob(ref: dict[str, Any], blob: bytes) -> np.ndarray:
    start, size = ref["$bin"]
    if start < 0 or start + size > len(blob):
        raise CheckpointError("an array reaches beyond the checkpoint's body")
    return np.frombuffer(blob, dtype=np.dtype(ref["t"]), count=size // np.dtype(ref["t"]).itemsize,
                         offset=start).reshape(ref["s"])


def _enc_graph(g: nx.DiGraph, allowed: dict[type, str], blobs: list[bytes]) -> dict[str, Any] | None:
    """The ledger's graph by column (about ten times faster than node by node), or None when some column
    does not fit; nodes and edges of other layouts are kept the generic way in `on`/`oe`."""
    index: dict[Any, int] = {}
    kinds = bytearray()
    acc_ids: list[str] = []
    acc: list[dict[str, Any]] = []
    holders: list[str] = []
    platforms: list[str] = []
    other_nodes: list[Any] = []
    for i, (n, d) in enumerate(g._node.items()):
        index[n] = i
        t = type(n)
        if t is str and tuple(d) == _ACCOUNT_KEYS and d["kind"] == "account":
            kinds.append(_N_ACCOUNT)
            acc_ids.append(n)
            acc.append(d)
        elif t is tuple and len(n) == 2 and type(n[1]) is str and n[0] in ("holder", "platform") \
                and len(d) == 1 and d.get("kind") == n[0]:
            kinds.append(_N_HOLDER if n[0] == "holder" else _N_PLATFORM)
            (holders if n[0] == "holder" else platforms).append(n[1])
        else:
            kinds.append(_N_OTHER)
            other_nodes.append([_enc(n, allowed, blobs), _enc(d, allowed, blobs)])
    ekinds = bytearray()
    eu: list[int] = []
    ev: list[int] = []
    flows: list[dict[str, Any]] = []
    other_edges: list[Any] = []
    for u, nbrs in g._succ.items():
        iu = index[u]
        for v, d in nbrs.items():
            eu.append(iu)
            ev.append(index[v])
            if tuple(d) == _FLOW_KEYS and d["kind"] == "flow":
                ekinds.append(_E_FLOW)
                flows.append(d)
            elif len(d) == 1 and d.get("kind") in ("holds", "related"):
                ekinds.append(_E_HOLDS if d["kind"] == "holds" else _E_RELATED)
            else:
                ekinds.append(_E_OTHER)
                other_edges.append(_enc(d, allowed, blobs))
    try:
        col = operator.itemgetter
        buckets = [e["buckets"] for e in flows]
        recent = [e["recent"] for e in flows]
        if set(map(type, buckets)) - {dict} or set(map(type, recent)) - {deque}:
            raise _Irregular
        maxlens = [r.maxlen for r in recent]
        accounts = {"id": _strs(acc_ids), "role": _strs(list(map(col("role"), acc))),
                    "platform": _strs(list(map(col("platform"), acc))), "holder": _strs(list(map(col("holder"), acc))),
                    "balance": _ints(list(map(col("balance"), acc))), "comp": _int_rows(list(map(col("comp"), acc)))}
        flow = {k: _ints(list(map(col(k), flows))) for k in ("amount", "count", "first_ts", "last_ts", "interest")}
        flow.update(by_type=_int_rows(list(map(col("by_type"), flows))),
                    origin=_int_rows(list(map(col("origin"), flows))),
                    nb=_ints(list(map(len, buckets))),
                    bd=_ints(list(itertools.chain.from_iterable(buckets))),
                    bv=_int_rows(list(itertools.chain.from_iterable(b.values() for b in buckets))),
                    nr=_ints(list(map(len, recent))),
                    rm=_ints([-1 if m is None else m for m in maxlens]))
        recent_ids = _strs(list(itertools.chain.from_iterable(recent)))
    except _Irregular:
        return None
    arrays = {"nk": np.frombuffer(bytes(kinds), dtype=np.uint8), "ek": np.frombuffer(bytes(ekinds), dtype=np.uint8),
              "eu": _ints(eu), "ev": _ints(ev), **{f"a.{k}": v for k, v in accounts.items() if isinstance(v, np.ndarray)},
              **{f"f.{k}": v for k, v in flow.items()}}
    return {"arrays": {k: _blob_ref(v, blobs) for k, v in arrays.items()},
            "acc": {k: v for k, v in accounts.items() if not isinstance(v, np.ndarray)},
            "holders": holders, "platforms": platforms, "rs": recent_ids, "on": other_nodes, "oe": other_edges,
            "graph": _enc(dict(g.graph), allowed, blobs)}


def _dec_graph(o: dict[str, Any], allowed: dict[str, type], blob: bytes) -> nx.DiGraph:
    a = {k: _from_blob(v, blob).tolist() for k, v in o["arrays"].items()}
    acc = o["acc"]
    account_attrs = iter([{"kind": "account", "balance": b, "comp": c, "role": r, "platform": p, "holder": h}
                          for b, c, r, p, h in zip(a["a.balance"], a["a.comp"], acc["role"], acc["platform"],
                                                   acc["holder"])])
    acc_ids, holders, platforms = iter(acc["id"]), iter(o["holders"]), iter(o["platforms"])
    other_nodes = iter(o["on"])
    nodes: list[tuple[Any, dict[str, Any]]] = []
    for k in a["nk"]:
        if k == _N_ACCOUNT:
            nodes.append((next(acc_ids), next(account_attrs)))
        elif k == _N_HOLDER:
            nodes.append((("holder", next(holders)), {"kind": "holder"}))
        elif k == _N_PLATFORM:
            nodes.append((("platform", next(platforms)), {"kind": "platform"}))
        else:
            n, d = next(other_nodes)
            nodes.append((_dec(n, allowed, blob), _dec(d, allowed, blob)))
    names = [n for n, _ in nodes]
    # flow edges: their buckets and recent ids are sliced out of the flat columns, edge by edge
    days, rows, rs = a["f.bd"], a["f.bv"], o["rs"]
    flows = []
    i = j = 0
    for amount, count, first, last, interest, by_type, origin, nb, nr, m in zip(
            a["f.amount"], a["f.count"], a["f.first_ts"], a["f.last_ts"], a["f.interest"], a["f.by_type"],
            a["f.origin"], a["f.nb"], a["f.nr"], a["f.rm"]):
        flows.append({"kind": "flow", "amount": amount, "count": count, "first_ts": first, "last_ts": last,
                      "by_type": by_type, "buckets": dict(zip(days[i:i + nb], rows[i:i + nb])),
                      "recent": deque(rs[j:j + nr], maxlen=None if m < 0 else m), "origin": origin,
                      "interest": interest})
        i += nb
        j += nr
    flow_attrs, other_edges = iter(flows), iter(o["oe"])
    edges: list[tuple[Any, Any, dict[str, Any]]] = []
    for k, u, v in zip(a["ek"], a["eu"], a["ev"]):
        if k == _E_FLOW:
            d = next(flow_attrs)
        elif k == _E_HOLDS:
            d = {"kind": "holds"}
        elif k == _E_RELATED:
            d = {"kind": "related"}
        else:
            d = _dec(next(other_edges), allowed, blob)
        edges.append((names[u], names[v], d))
    # built in networkx's documented dict-of-dicts storage directly (add_*_from copies every attribute dict)
    g = nx.DiGraph()
    g.graph.update(_dec(o["graph"], allowed, blob))
    node, succ, pred = g._node, g._succ, g._pred
    for n, d in nodes:
        node[n] = d
        succ[n] = {}
        pred[n] = {}
    for u, v, d in edges:
        succ[u][v] = pred[v][u] = d
    return g


# ---- files ---------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, cp: Checkpoint, *, before_rename: Callable[[], None] | None = None) -> int:
    """Write atomically; returns the bytes written. The previous checkpoint stays as `.prev`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw, json_length = _encode_body(cp)
    body = zlib.compress(raw, 1)
    header = json.dumps({"format": FORMAT, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                         "json": json_length})
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + b"\n" + header.encode() + b"\n")
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    if before_rename is not None:
        before_rename()
    if path.exists():
        os.replace(path, path.with_suffix(path.suffix + ".prev"))
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return len(body)


def _read(path: Path) -> Checkpoint:
    data = path.read_bytes()
    magic, _, rest = data.partition(b"\n")
    if magic != MAGIC:
        raise CheckpointError("not a fundwatch checkpoint (no FWCKPT header)")
    head, _, body = rest.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        raise CheckpointError("unreadable checkpoint header") from None
    if header.get("format") not in READABLE:
        raise CheckpointError(f"checkpoint format {header.get('format')}, this fundwatch reads {READABLE}")
    if len(body) != header.get("length") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CheckpointError("checkpoint body does not match its length and checksum (truncated or corrupt)")
    raw = zlib.decompress(body)
    split = header.get("json", len(raw))  # format 3: all of it is JSON
    if type(split) is not int or not 0 <= split <= len(raw):
        raise CheckpointError("checkpoint header gives no valid JSON length")
    with _gc_paused():
        cp = decode_state(json.loads(raw[:split]), raw[split:])
    if not isinstance(cp, Checkpoint):
        raise CheckpointError("the checkpoint does not hold a Checkpoint")
    return cp


def load_checkpoint(path: str | Path) -> Checkpoint | None:
    """The newest good checkpoint (the file, else its `.prev`), or None: the state is rebuilt."""
    path = Path(path)
    for candidate in (path, path.with_suffix(path.suffix + ".prev")):
        if not candidate.exists():
            continue
        try:
            cp = _read(candidate)
        except (CheckpointError, ValueError, KeyError, TypeError, IndexError, StopIteration, zlib.error,
                OSError) as exc:
            log.warning("checkpoint %s skipped: %s", candidate, exc)
            continue
        if candidate != path:
            log.warning("using the previous checkpoint %s", candidate)
        return cp
    if path.exists() or path.with_suffix(path.suffix + ".prev").exists():
        log.warning("no usable checkpoint at %s: rebuilding the state from the beginning of the topics", path)
    return None
