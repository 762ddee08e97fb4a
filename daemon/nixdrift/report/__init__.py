"""Renderers: text, JSON, Markdown, the remediation script and metrics (placeholder)."""

from __future__ import annotations

import json
from pathlib import Path

from nixdrift.models import Report


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"


def write_all(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "drift-report.json"
    path.write_text(render(report, "json"))
    return [path]
