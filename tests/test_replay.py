"""`fundwatch replay` end to end over container files: the report, the ranking, subsets of files, bad records."""
import json
import shutil

import fastavro
import numpy as np
import pytest

from ingest.sources import FILES
from schemas import schema
from service.cli import main


@pytest.fixture(scope="module")
def report(small_world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "report.json"
    assert main(["replay", str(small_world_dir), "--report", str(out),
                 "--dead-letters", str(out.parent / "dead.jsonl")]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def auc(pos, neg):
    pos, neg = np.array(pos)[:, None], np.array(neg)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_report_shape(report):
    p = report["platforms"][0]
    assert {"platform_id", "name", "kind", "jurisdiction", "score", "tier", "disposition", "findings"} <= set(p)
    f = p["findings"][0]
    assert {"detector", "severity", "score", "summary", "evidence"} <= set(f)
    assert set(f["evidence"]) == {"tx_ids", "account_ids"}
    assert report["alerts"] and {"alert_id", "platform_id", "jurisdiction", "lead_departments", "detector",
                                 "severity", "since", "evidence"} <= set(report["alerts"][0])
    scores = [p["score"] for p in report["platforms"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 100 for s in scores)


def test_scheme_platforms_rank_above_lawful_ones(report, small_world_dir):
    labels = json.loads((small_world_dir / "labels.json").read_text(encoding="utf-8"))["platforms"]
    pos = [p["score"] for p in report["platforms"] if labels[p["platform_id"]]["scheme"]]
    neg = [p["score"] for p in report["platforms"] if not labels[p["platform_id"]]["scheme"]]
    assert len(pos) >= 5 and len(neg) >= 15
    # in custody the money shows every scheme; a scheme known only by its disclosures has two of them in a
    # 75-day world, and schemes run from barely there to blatant (issue 8), so the overall AUC is lower
    in_custody = [p["score"] for p in report["platforms"] if labels[p["platform_id"]]["scheme"]
                  and labels[p["platform_id"]]["custody"]]
    # (seed 11 has a barely-there misappropriation that took 3,771 yuan in two transfers: below the 1万元
    # materiality floor, it ranks among the lawful platforms, as it should)
    assert len(in_custody) >= 4 and auc(in_custody, neg) >= 0.95
    assert auc(pos, neg) >= 0.8
    top = report["platforms"][:3]
    assert all(labels[p["platform_id"]]["scheme"] for p in top)
    lawful_high = [p for p in report["platforms"] if not labels[p["platform_id"]]["scheme"]
                   and p["tier"] in ("HIGH", "CRITICAL")]
    assert lawful_high == []


def test_registry_and_disclosures_alone_still_score_every_platform(small_world_dir, tmp_path):
    for name in ("Platform", "Disclosure"):
        shutil.copy(small_world_dir / FILES[name], tmp_path / FILES[name])
    out = tmp_path / "r.json"
    assert main(["replay", str(tmp_path), "--report", str(out), "--dead-letters", str(tmp_path / "d.jsonl")]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    labels = json.loads((small_world_dir / "labels.json").read_text(encoding="utf-8"))["platforms"]
    assert {p["platform_id"] for p in rep["platforms"]} == set(labels)


def test_bad_records_in_files_are_dead_lettered_with_file_and_index(small_world_dir, tmp_path):
    for name in ("Platform", "Account"):
        shutil.copy(small_world_dir / FILES[name], tmp_path / FILES[name])
    with open(small_world_dir / FILES["Transaction"], "rb") as fh:
        txs = [r for _, r in zip(range(200), fastavro.reader(fh))]
    for r in txs:
        r["ts"] = int(r["ts"].timestamp() * 1000)
    txs[10] = {**txs[10], "amount": 0}
    txs[20] = {**txs[20], "to_account": "NO-SUCH-ACCOUNT"}
    with open(tmp_path / FILES["Transaction"], "wb") as fh:
        fastavro.writer(fh, schema("Transaction").parsed, txs)
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", str(tmp_path), "--report", str(tmp_path / "r.json"), "--dead-letters", str(dead)]) == 0
    lines = [json.loads(x) for x in dead.read_text(encoding="utf-8").splitlines()]
    by_pos = {x["position"].rsplit(" ", 1)[-1]: x for x in lines}
    assert set(by_pos) == {"10", "20"}
    assert "non-positive amount 0" in by_pos["10"]["reason"] and by_pos["10"]["row"]["tx_id"] == txs[10]["tx_id"]
    assert "unregistered account NO-SUCH-ACCOUNT" in by_pos["20"]["reason"]
    assert by_pos["10"]["position"].startswith(str(tmp_path / FILES["Transaction"]))
    stats = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["stats"]
    assert stats["applied"] == stats["inputs"] - 2 and stats["dead"] == 2


def test_replay_says_clearly_when_there_is_nothing_to_read(tmp_path, capsys):
    assert main(["replay", str(tmp_path), "--report", str(tmp_path / "r.json")]) == 2
    assert "no container files" in capsys.readouterr().err


def test_a_record_split_into_parts_replays_like_one_file_and_stray_files_are_named(report, small_world_dir, tmp_path,
                                                                                 caplog):
    """transactions-<part>.avro files (a bank's daily exports) are read together, in event time."""
    for name in ("Platform", "Account", "Listing", "Disclosure"):
        shutil.copy(small_world_dir / FILES[name], tmp_path / FILES[name])
    with open(small_world_dir / FILES["Transaction"], "rb") as fh:
        reader = fastavro.reader(fh)
        writer_schema = reader.writer_schema
        rows = list(reader)
    cut = len(rows) // 3
    for part, chunk in (("2016-01", rows[:cut]), ("2016-02", rows[cut:2 * cut]), ("2016-03", rows[2 * cut:])):
        with open(tmp_path / f"transactions-{part}.avro", "wb") as fh:
            fastavro.writer(fh, writer_schema, chunk, codec="zstandard")
    shutil.copy(small_world_dir / FILES["Platform"], tmp_path / "transaction.avro")  # misspelt: not an input
    out = tmp_path / "r.json"
    assert main(["replay", str(tmp_path), "--report", str(out), "--dead-letters", str(tmp_path / "d.jsonl")]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["stats"]["inputs"] == report["stats"]["inputs"] and rep["stats"]["dead"] == report["stats"]["dead"]
    assert {p["platform_id"]: p["score"] for p in rep["platforms"]} == {
        p["platform_id"]: p["score"] for p in report["platforms"]}
    assert "ignoring transaction.avro" in caplog.text


def test_outcomes_avro_is_read_as_labels_that_move_no_clock(report, small_world_dir, tmp_path):
    """outcomes.avro beside the other files: every platform's fate, decided long after the data. Too few
    failures to learn from (fewer than ten), so the scores stay exactly the unsupervised ones, and no
    platform looks silent because an outcome was dated months later."""
    for name in ("Platform", "Account", "Listing", "Transaction", "Disclosure"):
        shutil.copy(small_world_dir / FILES[name], tmp_path / FILES[name])
    labels = json.loads((small_world_dir / "labels.json").read_text(encoding="utf-8"))["platforms"]
    late = max(p["as_of"] for p in report["platforms"]) + 200 * 86_400_000
    rows = [{"platform_id": pid, "status": "RUN_AWAY" if lab["scheme"] else "NORMAL", "decided_at": late,
             "source": "test", "note": None} for pid, lab in sorted(labels.items())]
    assert sum(r["status"] == "RUN_AWAY" for r in rows) < 10
    with open(tmp_path / FILES["Outcome"], "wb") as fh:
        fastavro.writer(fh, schema("Outcome").parsed, rows)
    out = tmp_path / "r.json"
    assert main(["replay", str(tmp_path), "--report", str(out), "--dead-letters", str(tmp_path / "d.jsonl")]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["stats"]["inputs"] == report["stats"]["inputs"] + len(rows) and rep["stats"]["dead"] == report["stats"]["dead"]
    assert {p["platform_id"]: (p["score"], p["as_of"], p["learned"]) for p in rep["platforms"]} == {
        p["platform_id"]: (p["score"], p["as_of"], None) for p in report["platforms"]}


def test_an_outcome_for_an_unregistered_platform_is_dead_lettered_once(small_world_dir, tmp_path):
    """Outcomes are labels for platforms we know: one for an unknown id would grow state without bound."""
    shutil.copy(small_world_dir / FILES["Platform"], tmp_path / FILES["Platform"])
    rows = [{"platform_id": "NO-SUCH-PLATFORM", "status": "RUN_AWAY", "decided_at": 1_460_000_000_000,
             "source": "spam", "note": None}]
    with open(tmp_path / FILES["Outcome"], "wb") as fh:
        fastavro.writer(fh, schema("Outcome").parsed, rows)
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", str(tmp_path), "--report", str(tmp_path / "r.json"), "--dead-letters", str(dead)]) == 0
    (line,) = [json.loads(x) for x in dead.read_text(encoding="utf-8").splitlines()]
    assert "outcome for unregistered platform 'NO-SUCH-PLATFORM'" in line["reason"]
