"""`drift-report.json` and `check --format json`: the report's stable schema, sorted keys."""

from __future__ import annotations

import json

from nixdrift.models import Report
from nixdrift.redact import strip_userinfo


def render(report: Report) -> str:
    data = report.to_json()
    # findings lose URL credentials where they are made; the flake reference is the user's own text
    data["flake"]["reference"] = strip_userinfo(data["flake"]["reference"])
    # ensure_ascii (the default) keeps odd bytes held as surrogates as \udcXX escapes: valid JSON
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
