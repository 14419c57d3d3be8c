"""Proof that a speed-up changed nothing: a digest of every assessment and alert a replay publishes.

    .venv/bin/python benchmarks/identity.py [--platforms 25 --days 75 --seed 11] [--dir DIR] [--out FILE.json]

Runs the replay pipeline in-process (FileSource, the same Settings as `fundwatch replay`) over a
simulated world (written to a temporary directory unless --dir names one) and records, for every
assessment pass, the SHA-256 of the JSON of every Assessment (`as_dict()`, findings, evidence graphs
and outlier contributions included) and of every alert event (`seen` repeats too, which the replay
report leaves out). Two code versions are output-identical when their `--out` files are equal byte for
byte; the script also prints the final digest and the wall time of the replay (a figure, not a benchmark).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.assess import Assessment  # noqa: E402
from ingest.dead_letters import FileDeadLetters  # noqa: E402
from ingest.simulator import simulate, write_world  # noqa: E402
from ingest.sources import FileSource  # noqa: E402
from service.cli import build_pipeline  # noqa: E402
from service.settings import Settings  # noqa: E402


class DigestOutput:
    """An Output that hashes everything published, pass by pass."""

    def __init__(self, dump: tuple[int, str] | None = None) -> None:
        self.dump = dump  # (pass number, file): that pass's assessments and alerts as JSON, to diff
        self.passes: list[dict[str, Any]] = []
        self.total = hashlib.sha256()

    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        a = json.dumps([x.as_dict() for x in assessments], ensure_ascii=False, sort_keys=True).encode()
        b = json.dumps(alerts, ensure_ascii=False, sort_keys=True).encode()
        if self.dump is not None and self.dump[0] == len(self.passes):
            Path(self.dump[1]).write_text(json.dumps({"assessments": [x.as_dict() for x in assessments],
                                                      "alerts": alerts}, ensure_ascii=False, indent=1, sort_keys=True))
        self.total.update(a)
        self.total.update(b)
        self.passes.append({"platforms": len(assessments), "alerts": len(alerts), "final": final,
                            "as_of": assessments[0].as_of if assessments else None,
                            "assessments_sha256": hashlib.sha256(a).hexdigest(),
                            "alerts_sha256": hashlib.sha256(b).hexdigest()})

    def flush(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platforms", type=int, default=25)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--dir", help="an existing world directory (container files) instead of simulating one")
    ap.add_argument("--out", help="write the per-pass digests here (JSON)")
    ap.add_argument("--dump", nargs=2, metavar=("PASS", "FILE"), help="write pass PASS (from 0) in full to FILE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(args.dir) if args.dir else Path(tmp) / "world"
        if not args.dir:
            write_world(simulate(args.platforms, args.days, args.seed), world)
        out = DigestOutput((int(args.dump[0]), args.dump[1]) if args.dump else None)
        settings = Settings()
        pipeline = build_pipeline(settings, FileSource(world), [out], FileDeadLetters(Path(tmp) / "dead.jsonl"))
        t = time.perf_counter()
        stats = pipeline.run()
        dt = time.perf_counter() - t
    counts = {k: v for k, v in stats.as_dict().items() if k != "seconds"}  # wall time is not an output
    doc = {"passes": out.passes, "stats": counts, "sha256": out.total.hexdigest()}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"{len(out.passes)} passes, {stats.applied:,} applied, replay {dt:.2f}s, sha256 {out.total.hexdigest()}")


if __name__ == "__main__":
    main()
