"""Checkpoint save and load time and size, this format against an earlier one and pickle, in one run.

    .venv/bin/python benchmarks/checkpoint.py [--platforms 120] [--days 120] [--seed 7] [--before 3c62c75]

Simulates a world, replays it through a Pipeline, then saves and loads the checkpoint of the resulting
state `--repeat` times each way and prints the medians as JSON: fundwatch's format as it is now, the
format of the commit `--before` (its ingest/checkpoint.py read from git, so both run on the same state
in the same process) and pickle (the baseline; not usable for checkpoints, since loading it can run code).
"""
from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.assess import Assessor  # noqa: E402
from graph.ledger import Ledger  # noqa: E402
from ingest import checkpoint  # noqa: E402
from ingest.dead_letters import MemoryDeadLetters  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402
from ingest.sources import FileSource  # noqa: E402


def module_at(rev: str) -> types.ModuleType:
    """ingest/checkpoint.py as it was at `rev`, as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:ingest/checkpoint.py"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType(f"checkpoint_{rev}")
    mod.__dict__["__name__"] = "ingest.checkpoint"  # its allow-list names its own Checkpoint class so
    exec(compile(src, f"{rev}:ingest/checkpoint.py", "exec"), mod.__dict__)
    return mod


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platforms", type=int, default=120)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--before", default="3c62c75", help="a commit whose checkpoint format to compare against")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(simulate(args.platforms, args.days, args.seed), world)
        p = Pipeline(FileSource(str(world)), Ledger(), Assessor(), [], MemoryDeadLetters())
        p.run()
        positions = {("custody.transactions", i): 1000 * i for i in range(6)}
        rows: dict[str, dict[str, Any]] = {}
        for label, mod in (("before", module_at(args.before)), ("now", checkpoint)):
            cp = mod.Checkpoint(p.ledger, p.assessor, {}, dict(positions))
            path = Path(tmp) / f"{label}.ckpt"
            save_s, size = timed(lambda: mod.save_checkpoint(path, cp), args.repeat)
            load_s, back = timed(lambda: mod.load_checkpoint(path), args.repeat)
            assert back is not None and back.ledger.stats() == p.ledger.stats(), label
            rows[label] = {"format": mod.FORMAT, "save_s": round(save_s, 2), "load_s": round(load_s, 2),
                           "bytes": size}
        path = Path(tmp) / "state.pickle"

        def pickle_save() -> int:
            data = pickle.dumps(checkpoint.Checkpoint(p.ledger, p.assessor, {}, dict(positions)), protocol=5)
            path.write_bytes(data)
            return len(data)

        save_s, size = timed(pickle_save, args.repeat)
        load_s, _ = timed(lambda: pickle.loads(path.read_bytes()), args.repeat)
        rows["pickle"] = {"save_s": round(save_s, 2), "load_s": round(load_s, 2), "bytes": size}
    now, before, base = rows["now"], rows["before"], rows["pickle"]
    print(json.dumps({"world": {"platforms": args.platforms, "days": args.days, "seed": args.seed,
                                **p.ledger.stats()},
                      "median_of": args.repeat, **rows,
                      "speedup_vs_before": {"save": round(before["save_s"] / now["save_s"], 1),
                                            "load": round(before["load_s"] / now["load_s"], 1)},
                      "ratio_to_pickle": {"save": round(now["save_s"] / base["save_s"], 2),
                                          "load": round(now["load_s"] / base["load_s"], 2),
                                          "bytes": round(now["bytes"] / base["bytes"], 2)}}, indent=1))


if __name__ == "__main__":
    main()
