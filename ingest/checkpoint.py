"""Checkpoints: the ledger, the assessor's fitted state and the input positions, saved together.

A restart loads the newest checkpoint and resumes reading right after the positions it
holds; without one, it reads every input topic from the beginning (the state is rebuilt from
the log: custody.* topics keep their history). Offsets committed to Kafka are for lag
monitoring; the checkpoint is what the state agrees with. Written atomically (temp file,
fsync, rename), so a crash leaves the previous checkpoint intact.
"""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = 2  # 2: the ledger counts tip-offs
log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    ledger: Any
    assessor: Any
    pending: dict[str, Any]
    positions: dict[tuple[str, int], int]  # (topic, partition) -> next offset to read
    format: int = FORMAT


def save_checkpoint(path: str | Path, cp: Checkpoint) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(cp, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint | None:
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        cp = pickle.load(fh)  # our own file, written by save_checkpoint
    if not isinstance(cp, Checkpoint) or cp.format != FORMAT:
        log.warning("%s is not a fundwatch checkpoint of format %d: rebuilding the state from the topics", path,
                    FORMAT)
        return None
    return cp
