"""The replay report: the final ranking with findings and every alert raised along the way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detectors.assess import Assessment

__all__ = ["ReportOutput", "report_dict"]


def report_dict(assessments: list[Assessment], alerts: list[dict[str, Any]], stats: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    return {"platforms": [a.as_dict() for a in assessments], "alerts": alerts, "stats": stats or {}}


class ReportOutput:
    """Keeps the newest assessment and all alerts in memory; writes the JSON report on demand."""

    def __init__(self) -> None:
        self.assessments: list[Assessment] = []
        self.alerts: list[dict[str, Any]] = []

    def publish(self, assessments: list[Assessment], alerts: list[dict[str, Any]], final: bool) -> None:
        self.assessments = assessments
        self.alerts.extend(al for al in alerts if al["change"] != "seen")

    def flush(self) -> None:
        pass

    def write(self, path: str | Path, stats: dict[str, Any] | None = None) -> None:
        Path(path).write_text(json.dumps(report_dict(self.assessments, self.alerts, stats), ensure_ascii=False,
                                         indent=1), encoding="utf-8")
