"""Detection quality of `replay` over simulated worlds, against the simulator's labels.

    .venv/bin/python benchmarks/quality.py --seeds 101 102 103 --platforms 300 --days 180

Seeds 1-20 are for tuning; report on others. `--half-outcomes` replays each world a second time with
the outcomes of half the platforms (chosen by a seeded hash) in outcomes.avro, and prints the figures of
the other half from both runs: what learning from outcomes adds. Prints, per seed and pooled: ROC-AUC of the
score (all schemes, and each scheme against lawful platforms), the share of scheme platforms
in HIGH or CRITICAL (also by the scheme's intensity, blatant to barely there), the share of
lawful ones there, a table of lawful platforms in HIGH+ by lawful variant (labels.json's
`lawful_variants`: the near-misses, seasons, wind-downs, sloppy disclosures a real population
has), the share of scheme platforms whose findings name the right detector, the median delay in
simulated days from a scheme's start to its platform's first alert, and the disclosure-only
segment on its own (platforms a supervisor knows only by their disclosures).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from detectors.assess import Assessor  # noqa: E402
from detectors.risk import risk_score  # noqa: E402
from graph.ledger import Ledger  # noqa: E402
from ingest.dead_letters import MemoryDeadLetters  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.report import ReportOutput  # noqa: E402
from ingest.simulator import SCHEMES, T0, simulate, write_world  # noqa: E402
from ingest.sources import FileSource  # noqa: E402
from schemas.records import DAY_MS  # noqa: E402

HIGH = ("HIGH", "CRITICAL")


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    p, n = np.array(pos)[:, None], np.array(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def labelled_half(seed: int, platform_id: str) -> bool:
    """The platforms whose outcomes the half-outcomes mode gives away: a seeded hash, not the labels."""
    return zlib.crc32(f"{seed}:{platform_id}".encode()) % 2 == 0


def run_world(seed: int, platforms: int, days: int, workdir: Path, assess_every_days: int,
              outcomes: str = "none") -> list[dict[str, Any]]:
    world = simulate(platforms, days, seed)
    d = workdir / f"seed{seed}-{outcomes}"
    given = [p["platform_id"] for p in world.platforms if outcomes == "half" and labelled_half(seed, p["platform_id"])]
    write_world(world, d, outcomes_for=given)
    labels = world.labels
    del world  # the replay reads the files; keep only the ground truth
    report = ReportOutput()
    t = time.monotonic()
    Pipeline(FileSource(d), Ledger(), Assessor(), [report], MemoryDeadLetters(),
             assess_every_ms=assess_every_days * DAY_MS).run()
    seconds = time.monotonic() - t
    first_alert: dict[str, int] = {}
    for al in report.alerts:
        first_alert[al["platform_id"]] = min(first_alert.get(al["platform_id"], al["raised_at"]), al["raised_at"])
    rows = []
    for a in report.assessments:
        lab = labels["platforms"][a.platform_id]
        start_ms = T0 + lab["start_day"] * DAY_MS if lab["scheme"] else None
        alert_ms = first_alert.get(a.platform_id)
        rows.append({"seed": seed, "platform_id": a.platform_id, "labelled": labelled_half(seed, a.platform_id),
                     "scheme": lab["scheme"], "custody": lab["custody"],
                     "variants": lab.get("lawful_variants", lab.get("lawful_traits", [])),
                     "intensity": lab.get("intensity"), "expected": set(lab["expected_detectors"]), "score": a.score,
                     "tier": a.tier, "detectors": {f.detector for f in a.findings},
                     "outlier": a.outlier_percentile, "rules_score": risk_score(a.findings, 0.0),
                     "severe": sorted(f"{f.detector}:{f.severity}" for f in a.findings if f.severity != "LOW"),
                     "delay_days": (max(0, alert_ms - start_ms) / DAY_MS) if (start_ms and alert_ms
                                                                               and alert_ms >= start_ms) else None,
                     "alerted_before_start": bool(start_ms and alert_ms and alert_ms < start_ms)})
    print(f"seed {seed} ({outcomes} outcomes given): {len(rows)} platforms, replay {seconds:.0f}s", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], label: str) -> None:
    schemes = [r for r in rows if r["scheme"]]
    lawful = [r for r in rows if not r["scheme"]]
    neg = [r["score"] for r in lawful]
    print(f"\n== {label}: {len(schemes)} scheme platforms, {len(lawful)} lawful")
    print(f"AUC all schemes {auc([r['score'] for r in schemes], neg):.3f}")
    for s in SCHEMES:
        pos = [r for r in schemes if r["scheme"] == s]
        if pos:
            right = sum(1 for r in pos if r["expected"] & r["detectors"]) / len(pos)
            held = [r for r in pos if r["custody"]]
            right_held = sum(1 for r in held if r["expected"] & r["detectors"]) / max(1, len(held))
            print(f"  {s:<18} n={len(pos):3d} AUC {auc([r['score'] for r in pos], neg):.3f}  "
                  f"HIGH+ {sum(r['tier'] in HIGH for r in pos) / len(pos):.0%}  right detector {right:.0%} "
                  f"(in custody {right_held:.0%} of {len(held)})")
    print(f"scheme platforms in HIGH+: {sum(r['tier'] in HIGH for r in schemes) / max(1, len(schemes)):.1%}")
    bands = [("barely there <0.33", 0.0, 0.33), ("middling 0.33-0.66", 0.33, 0.66), ("blatant >=0.66", 0.66, 1.01)]
    for name, lo, hi in bands:
        band = [r for r in schemes if r["intensity"] is not None and lo <= r["intensity"] < hi]
        if band:
            print(f"  intensity {name:<19} n={len(band):3d} AUC {auc([r['score'] for r in band], neg):.3f}  "
                  f"HIGH+ {sum(r['tier'] in HIGH for r in band) / len(band):.0%}")
    print(f"lawful platforms in HIGH+: {sum(r['tier'] in HIGH for r in lawful) / max(1, len(lawful)):.1%}")
    variant_table(lawful)
    for r in sorted((r for r in lawful if r["tier"] in HIGH), key=lambda r: -r["score"]):
        # what put a lawful platform there: its findings, and the score the rules alone give (no outlier part)
        print(f"    {r['seed']}/{r['platform_id']} score {r['score']:.1f} (rules alone {r['rules_score']:.1f}, outlier "
              f"percentile {r['outlier']:.2f}) {' '.join(r['severe']) or '-'} [{', '.join(r['variants'])}]")
    right = sum(1 for r in schemes if r["expected"] & r["detectors"]) / max(1, len(schemes))
    print(f"right detector named: {right:.1%}")
    delays = [r["delay_days"] for r in schemes if r["delay_days"] is not None]
    never = sum(1 for r in schemes if r["delay_days"] is None)
    print(f"median delay to first alert: {statistics.median(delays) if delays else float('nan'):.1f} days "
          f"({len(delays)} alerted after the start, {never} not alerted after it)")
    custody_pos = [r["score"] for r in schemes if r["custody"]]
    nocust_pos = [r["score"] for r in schemes if not r["custody"]]
    print(f"AUC in custody {auc(custody_pos, neg):.3f} (n={len(custody_pos)}); disclosure-only "
          f"{auc(nocust_pos, neg):.3f} (n={len(nocust_pos)})  [against every lawful platform]")
    # each segment on its own: platforms in custody (the ledger shows the money) and those a supervisor knows
    # only by their disclosures, each scheme against the lawful platforms of the same segment
    for name, in_custody in (("in custody", True), ("disclosure-only", False)):
        seg_pos = [r for r in schemes if r["custody"] == in_custody]
        seg_neg = [r for r in lawful if r["custody"] == in_custody]
        neg_s = [r["score"] for r in seg_neg]
        print(f"{name} segment: AUC {auc([r['score'] for r in seg_pos], neg_s):.3f} ({len(seg_pos)} schemes, "
              f"{len(seg_neg)} lawful); lawful HIGH+ there {sum(r['tier'] in HIGH for r in seg_neg)}/{len(seg_neg)}")
        for sch in SCHEMES:
            pos = [r for r in seg_pos if r["scheme"] == sch]
            if pos:
                right = sum(1 for r in pos if r["expected"] & r["detectors"]) / len(pos)
                print(f"    {sch:<18} n={len(pos):3d} AUC {auc([r['score'] for r in pos], neg_s):.3f}  "
                      f"right detector {right:.0%}")


def variant_table(lawful: list[dict[str, Any]]) -> None:
    """Lawful platforms in HIGH+ by lawful variant (a platform counts under each variant it runs)."""
    names = sorted({v for r in lawful for v in r["variants"]})
    plain = [r for r in lawful if not r["variants"]]
    print(f"  {'lawful variant':<28} {'n':>4} {'HIGH+':>6} {'rate':>6}")
    for name, group in [(v, [r for r in lawful if v in r["variants"]]) for v in names] + [("(none)", plain)]:
        if group:
            hi = sum(r["tier"] in HIGH for r in group)
            print(f"  {name:<28} {len(group):>4} {hi:>6} {hi / len(group):>6.1%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--platforms", type=int, default=300)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--assess-every-days", type=int, default=7)
    ap.add_argument("--workdir", default="var/quality")
    ap.add_argument("--half-outcomes", action="store_true",
                    help="also replay each world with the outcomes of half its platforms (a seeded hash) given, "
                         "and compare both runs on the other half")
    ap.add_argument("--dump", help="write every platform's row (JSON lines) here, to study the misses")
    args = ap.parse_args()
    work = Path(args.workdir)
    all_rows: list[dict[str, Any]] = []
    half_plain: list[dict[str, Any]] = []
    half_given: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows = run_world(seed, args.platforms, args.days, work, args.assess_every_days)
        summarize(rows, f"seed {seed}")
        all_rows.extend(rows)
        if args.half_outcomes:
            given = run_world(seed, args.platforms, args.days, work, args.assess_every_days, outcomes="half")
            half_plain.extend(r for r in rows if not r["labelled"])
            half_given.extend(r for r in given if not r["labelled"])
    if args.dump:
        with open(args.dump, "w") as out:
            for r in all_rows:
                out.write(json.dumps(r, default=sorted, ensure_ascii=False) + "\n")
    if len(args.seeds) > 1:
        summarize(all_rows, f"pooled seeds {args.seeds}")
    if args.half_outcomes:
        summarize(half_plain, f"seeds {args.seeds}, the unlabelled half, no outcomes given")
        summarize(half_given, f"seeds {args.seeds}, the unlabelled half, the other half's outcomes given")


if __name__ == "__main__":
    main()
