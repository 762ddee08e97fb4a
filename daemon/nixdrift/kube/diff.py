"""Pure structural comparison of a manifest with its live object: only the fields the manifest sets.

The API server fills in defaults, status and bookkeeping metadata; none of that is drift. A field
is compared when the manifest sets it; quantities compare by value (`500m` = `0.5`), numbers and
numeric strings by value (`"80"` = `80`), and an empty list or map equals an absent one. Lists of
named items (containers, env, volumes, ports) are matched by their merge key, so the order of
containers does not matter and an item added live is reported as added.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nixdrift.kube import quantity

MERGE_KEYS = ("name", "containerPort", "mountPath", "port", "ip", "topologyKey")
IGNORED_META = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


@dataclass(frozen=True, slots=True)
class Item:
    """A list element named by its merge key (`containers[name=app]`)."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"[{self.key}={self.value}]"


Segment = str | Item | int
Path = tuple[Segment, ...]


class Change(enum.Enum):
    CHANGED = "changed"
    REMOVED = "removed"  # the manifest sets it; live has none
    ADDED = "added"  # a named item live that the manifest's list does not have


@dataclass(frozen=True, slots=True)
class Difference:
    path: Path
    change: Change
    expected: Any
    actual: Any

    @property
    def dotted(self) -> str:
        return dotted(self.path)


def dotted(path: Path) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, Item):
            out += str(seg)
        elif isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + seg
    return out


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, Sequence | Mapping) and not isinstance(value, str) and not value)


def same_scalar(declared: Any, live: Any, path: Path) -> bool:
    if declared == live and type(declared) is type(live):
        return True
    if isinstance(declared, bool) or isinstance(live, bool):
        return declared is live
    if _in_resources(path):
        return quantity.equal(declared, live)
    if isinstance(declared, int | float | str) and isinstance(live, int | float | str):
        return str(declared).strip() == str(live).strip() or quantity.equal(declared, live)
    return False


def _in_resources(path: Path) -> bool:
    return any(seg in ("limits", "requests") for seg in path if isinstance(seg, str))


def merge_key(items: Sequence[Any]) -> str | None:
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def diff(declared: Any, live: Any, path: Path = ()) -> list[Difference]:
    """Every difference in the fields `declared` sets (pure)."""
    if isinstance(declared, Mapping):
        if empty(declared) and empty(live):
            return []
        if not isinstance(live, Mapping):
            return [Difference(path, Change.REMOVED if live is None else Change.CHANGED, declared, live)]
        out: list[Difference] = []
        for k in sorted(declared, key=str):
            if path and path[-1] == "annotations" and k in IGNORED_META:
                continue
            out.extend(diff(declared[k], live.get(k), (*path, str(k))))
        return out
    if isinstance(declared, list):
        if empty(declared) and empty(live):
            return []
        if not isinstance(live, list):
            return [Difference(path, Change.REMOVED if live is None else Change.CHANGED, declared, live)]
        key = merge_key(declared)
        if key is not None and merge_key(live) in (key, None) and all(isinstance(i, Mapping) for i in live):
            return _named(declared, live, key, path)
        if len(declared) != len(live) or any(diff(d, v, path) for d, v in zip(declared, live, strict=True)):
            return [Difference(path, Change.CHANGED, declared, live)]
        return []
    if declared is None:
        return []
    if live is None:
        return [Difference(path, Change.REMOVED, declared, None)]
    if same_scalar(declared, live, path):
        return []
    return [Difference(path, Change.CHANGED, declared, live)]


def _named(declared: list[Any], live: list[Any], key: str, path: Path) -> list[Difference]:
    live_by = {str(i.get(key)): i for i in live if key in i}
    out: list[Difference] = []
    names = set()
    for item in declared:
        name = str(item[key])
        names.add(name)
        seg = Item(key, name)
        if name not in live_by:
            out.append(Difference((*path, seg), Change.REMOVED, item, None))
        else:
            out.extend(diff(item, live_by[name], (*path, seg)))
    for name in sorted(set(live_by) - names):
        out.append(Difference((*path, Item(key, name)), Change.ADDED, None, live_by[name]))
    return out


def covers(declared: Any, live: Any) -> bool:
    """Does `live` hold everything `declared` sets (a rule matched against a live rule)?"""
    return not diff(declared, live)


def lookup(body: Any, path: Path) -> Any:
    """The value at `path` (None when absent)."""
    node = body
    for seg in path:
        if isinstance(seg, Item):
            if not isinstance(node, list):
                return None
            node = next((i for i in node if isinstance(i, Mapping) and str(i.get(seg.key)) == seg.value), None)
        elif isinstance(seg, int):
            node = node[seg] if isinstance(node, list) and seg < len(node) else None
        else:
            node = node.get(seg) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return node
