"""`drift-report.json` and `check --format json`: the report's stable schema, sorted keys."""

from __future__ import annotations

import json

from nixdrift.models import Report


def render(report: Report) -> str:
    # ensure_ascii (the default) keeps odd bytes held as surrogates as \udcXX escapes: valid JSON
    return json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"
