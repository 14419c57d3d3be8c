"""Checkpoints: the ledger, the assessor's state and the input positions, saved together.

A restart loads the newest good checkpoint and resumes reading right after the positions it
holds; without one, it reads every input topic from the beginning (the state is rebuilt from the
log: custody.* topics keep their history). Offsets committed to Kafka are for lag monitoring;
the checkpoint is what the state agrees with.

The format is fundwatch's own, not pickle (a checkpoint file must not be able to run code):
`FWCKPT` and a JSON header line (format, length and SHA-256 of the body), then the body, zlib-
compressed JSON in which containers Python's JSON lacks are tagged (tuples, sets, deques, dicts
with non-string keys, bytes, numpy arrays) and objects are allowed only from a fixed list of
fundwatch's own classes. Fitted outlier models are stored as the data they were fitted on and
refitted on load (the fit is seeded, so the model is the same). Written to a temporary file,
fsynced, the previous checkpoint kept as `.prev`, renamed into place and the directory fsynced;
a file that is truncated, corrupt or of another format is skipped with a warning for the
previous one, and with neither the state is rebuilt.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import networkx as nx
import numpy as np

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT", "encode_state", "decode_state",
           "CheckpointError"]

FORMAT = 3  # 3: own format, no pickle
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
def encode_state(obj: Any) -> Any:
    """A JSON-able form of fundwatch's state; `decode_state` turns it back."""
    allowed = {v: k for k, v in _allowed().items()}
    return _enc(obj, allowed)


_PLAIN = (str, int, bool, type(None))


def _enc(o: Any, allowed: dict[type, str]) -> Any:
    t = type(o)
    if t is str or t is int or t is bool or o is None:
        return o
    if t is list:
        if all(type(x) in _PLAIN for x in o):  # the common case (day buckets, compositions): as it is
            return o
        return [_enc(x, allowed) for x in o]
    if t is dict:
        if all(type(k) is str and k[:1] != "$" for k in o):
            return {k: _enc(v, allowed) for k, v in o.items()}
        return {"$d": [[_enc(k, allowed), _enc(v, allowed)] for k, v in o.items()]}
    if isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return o if np.isfinite(o) else {"$f": repr(o)}
    if isinstance(o, np.generic):
        return _enc(o.item(), allowed)
    if isinstance(o, list):
        return [_enc(x, allowed) for x in o]
    if isinstance(o, tuple):
        return {"$tu": [_enc(x, allowed) for x in o]}
    if isinstance(o, frozenset):
        return {"$fs": [_enc(x, allowed) for x in sorted(o, key=repr)]}
    if isinstance(o, set):
        return {"$set": [_enc(x, allowed) for x in sorted(o, key=repr)]}
    if isinstance(o, deque):
        return {"$dq": [_enc(x, allowed) for x in o], "m": o.maxlen}
    if isinstance(o, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in o):
            return {k: _enc(v, allowed) for k, v in o.items()}
        return {"$d": [[_enc(k, allowed), _enc(v, allowed)] for k, v in o.items()]}
    if isinstance(o, bytes):
        return {"$b": base64.b64encode(o).decode()}
    if isinstance(o, np.ndarray):
        a = np.ascontiguousarray(o)
        return {"$np": base64.b64encode(a.tobytes()).decode(), "t": a.dtype.str, "s": list(a.shape)}
    if isinstance(o, nx.DiGraph):
        return {"$nx": {"nodes": [[_enc(n, allowed), _enc(d, allowed)] for n, d in o.nodes(data=True)],
                        "edges": [[_enc(u, allowed), _enc(v, allowed), _enc(d, allowed)]
                                  for u, v, d in o.edges(data=True)]}}
    name = allowed.get(type(o))
    if name is None:
        raise CheckpointError(f"{type(o).__module__}.{type(o).__qualname__} is not a checkpoint class")
    from detectors.scoring import OutlierEnsemble

    if isinstance(o, OutlierEnsemble):  # the data it was fitted on; refitted on load
        return {"$o": name, "fit": _enc(getattr(o, "X_fit_", None), allowed),
                "d": _enc({"feature_names": o.feature_names, "random_state": o.random_state,
                           "n_estimators": o.n_estimators, "use_hbos": o.use_hbos}, allowed)}
    if dataclasses.is_dataclass(o):
        state = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    else:
        state = dict(vars(o))
    return {"$o": name, "d": _enc(state, allowed)}


def decode_state(data: Any) -> Any:
    return _dec(data, _allowed())


def _dec(o: Any, allowed: dict[str, type]) -> Any:
    t = type(o)
    if t is list:
        if all(type(x) in _PLAIN for x in o):
            return o
        return [_dec(x, allowed) for x in o]
    if t is not dict:
        return o
    if len(o) == 0 or not next(iter(o)).startswith("$"):
        return {k: _dec(v, allowed) for k, v in o.items()}
    if "$f" in o:
        return float(o["$f"])
    if "$tu" in o:
        return tuple(_dec(x, allowed) for x in o["$tu"])
    if "$fs" in o:
        return frozenset(_dec(x, allowed) for x in o["$fs"])
    if "$set" in o:
        return {_dec(x, allowed) for x in o["$set"]}
    if "$dq" in o:
        return deque((_dec(x, allowed) for x in o["$dq"]), maxlen=o["m"])
    if "$d" in o:
        return {_dec(k, allowed): _dec(v, allowed) for k, v in o["$d"]}
    if "$b" in o:
        return base64.b64decode(o["$b"])
    if "$np" in o:
        return np.frombuffer(base64.b64decode(o["$np"]), dtype=np.dtype(o["t"])).reshape(o["s"]).copy()
    if "$nx" in o:
        g = nx.DiGraph()
        g.add_nodes_from((_dec(n, allowed), _dec(d, allowed)) for n, d in o["$nx"]["nodes"])
        g.add_edges_from((_dec(u, allowed), _dec(v, allowed), _dec(d, allowed)) for u, v, d in o["$nx"]["edges"])
        return g
    if "$o" in o:
        cls = allowed.get(o["$o"])
        if cls is None:
            raise CheckpointError(f"a checkpoint may not name {o['$o']!r}")
        state = _dec(o["d"], allowed)
        from detectors.scoring import OutlierEnsemble

        if cls is OutlierEnsemble:
            model = OutlierEnsemble(**state)
            fit = _dec(o.get("fit"), allowed)
            return model.fit(fit) if fit is not None else model
        if dataclasses.is_dataclass(cls):
            return cls(**state)
        obj: Any = object.__new__(cls)  # Ledger, Assessor: their state, not their constructor's defaults
        obj.__dict__.update(state)
        return obj
    raise CheckpointError(f"unknown tag in {sorted(o)[:3]}")


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
    body = zlib.compress(json.dumps(encode_state(cp), separators=(",", ":")).encode("utf-8"), 1)
    header = json.dumps({"format": FORMAT, "length": len(body), "sha256": hashlib.sha256(body).hexdigest()})
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
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {header.get('format')}, this fundwatch reads {FORMAT}")
    if len(body) != header.get("length") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CheckpointError("checkpoint body does not match its length and checksum (truncated or corrupt)")
    cp = decode_state(json.loads(zlib.decompress(body)))
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
        except (CheckpointError, ValueError, KeyError, TypeError, zlib.error, OSError) as exc:
            log.warning("checkpoint %s skipped: %s", candidate, exc)
            continue
        if candidate != path:
            log.warning("using the previous checkpoint %s", candidate)
        return cp
    if path.exists() or path.with_suffix(path.suffix + ".prev").exists():
        log.warning("no usable checkpoint at %s: rebuilding the state from the beginning of the topics", path)
    return None
