"""Who changed a field, and when: read from the live object's `metadata.managedFields`.

Each entry names a manager (`kubectl-edit`, `kubectl-client-side-apply`, a controller), an
operation and a time, and the set of fields it owns (`fieldsV1`: `f:<field>` for a field,
`k:{"name":"app"}` for a list item by its merge key). The owner of the deepest owned prefix of a
changed path is the one who set the live value; several owners of one field (shared by Apply) are
ordered by time, the latest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nixdrift.kube.diff import Item, Path


@dataclass(frozen=True, slots=True)
class Attribution:
    manager: str
    operation: str
    time: str

    def evidence(self) -> dict[str, str]:
        return {"manager": self.manager, "operation": self.operation, "changed_at": self.time}


def _step(fields: Mapping[str, Any], seg: Item | str | int) -> Mapping[str, Any] | None:
    if isinstance(seg, str):
        child = fields.get(f"f:{seg}")
        return child if isinstance(child, Mapping) else None
    if isinstance(seg, int):
        return None
    for key, child in fields.items():
        if not key.startswith("k:") or not isinstance(child, Mapping):
            continue
        try:
            ident = json.loads(key[2:])
        except ValueError:
            continue
        if isinstance(ident, Mapping) and str(ident.get(seg.key)) == seg.value:
            return child
    return None


def _depth(fields: Mapping[str, Any], path: Path) -> int:
    """How many segments of `path` this field set owns, from the top."""
    node: Mapping[str, Any] | None = fields
    depth = 0
    for seg in path:
        node = _step(node, seg) if node is not None else None
        if node is None:
            break
        depth += 1
    return depth


def attribute(live: Mapping[str, Any], path: Path) -> Attribution | None:
    meta = live.get("metadata") or {}
    entries = meta.get("managedFields") if isinstance(meta, Mapping) else None
    if not isinstance(entries, list):
        return None
    best: list[tuple[int, str, Attribution]] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("fieldsV1"), Mapping):
            continue
        depth = _depth(entry["fieldsV1"], path)
        if depth == 0:
            continue
        who = Attribution(
            manager=str(entry.get("manager") or "unknown"),
            operation=str(entry.get("operation") or ""),
            time=str(entry.get("time") or ""),
        )
        best.append((depth, who.time, who))
    if not best:
        return None
    best.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return best[0][2]
