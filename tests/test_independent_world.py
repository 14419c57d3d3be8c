"""The second world (benchmarks/independent_world.py, written apart from ingest/simulator.py): a small one
replays with nothing valid dead-lettered, and the schemes it plants rank above its lawful platforms."""
import json
import sys
from pathlib import Path

from service.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import independent_world as iw  # noqa: E402


def test_a_small_independent_world_replays_clean_and_its_schemes_outrank_its_lawful_platforms(tmp_path, capsys):
    world = tmp_path / "world"
    iw.write(iw.build(seed=3, n_platforms=50, days=90), str(world))
    report = tmp_path / "report.json"
    assert main(["replay", str(world), "--report", str(report), "--dead-letters", str(tmp_path / "dead.jsonl")]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["dead"] == 0 and stats["applied"] == stats["inputs"] > 10_000
    figures = iw.evaluate(str(world), str(report))
    assert figures["missing_from_report"] == []
    assert figures["auc_custody"][0] >= 0.9, figures["auc_custody"]
    held, total = (int(x) for x in figures["lawful_high_or_critical"].split("/"))
    assert total > 20 and held <= 1, figures["lawful_high_by_variant"]
