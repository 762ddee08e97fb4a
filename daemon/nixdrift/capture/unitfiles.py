"""Unit directories and unit files: what a directory holds (units, masks, wants links, drop-ins) and
the few settings of a unit file that nixdrift compares.

Only Type=, RemainAfterExit=, ExecStart=, Listen*= and whether any Condition*/Assert* exists are
kept from a unit file: Environment= and friends may hold secrets and are never retained.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nixdrift.capture import digests
from nixdrift.live.services import (
    DROPIN_DIR_SUFFIX,
    LINK_DIR_SUFFIXES,
    EntryKind,
    UnitDir,
    UnitEntry,
    UnitFile,
    is_unit_name,
)
from nixdrift.rootfs import Root

NULL = "/dev/null"


# -- scanning a directory ---------------------------------------------------------------------


def digest_of(root: Root, host_path: str) -> str:
    """sha256 of a file's content after following links ("" when unreadable). A snapshot's reduced
    unit file (secrets as digests) answers with the digest of the original, recorded at capture."""
    try:
        record = digests.held(root, root.resolve(host_path))
        if record is not None and record.sha256:
            return record.sha256
        return hashlib.sha256(root.read_bytes(host_path)).hexdigest()
    except OSError:
        return ""


def readlink(root: Root, host_path: str) -> str:
    """A link's target ("" for no link), with the links in its parent directories followed first
    (a closure's etc/systemd/system is itself reached through links)."""
    parent, _, name = host_path.rpartition("/")
    return _readlink_in(os.fspath(root.open_path(parent or "/")), name)


def _readlink_in(real_dir: str, name: str) -> str:
    """The target of `name` in a directory already located on this machine ("" for no link)."""
    try:
        return os.readlink(f"{real_dir}/{name}")
    except OSError:
        return ""


def _top_entry(root: Root, real_dir: str, host_path: str, rel: str, digests: bool) -> UnitEntry:
    target = _readlink_in(real_dir, rel)
    if target and root.resolve(host_path) == NULL:
        return UnitEntry(rel, EntryKind.MASK, host_path, target)
    if not target:  # an empty file masks too (a link's emptiness is no mask: it is not stat'ed)
        try:
            empty = root.stat(host_path).st_size == 0
        except OSError:
            empty = False
        if empty:
            return UnitEntry(rel, EntryKind.MASK, host_path)
    return UnitEntry(rel, EntryKind.UNIT, host_path, target, digest_of(root, host_path) if digests else "")


def _list(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def scan_unit_dir(root: Root, host_dir: str, digests: bool = True) -> UnitDir | None:
    """What a unit directory holds, or None when it does not exist (or is no directory).

    Each directory is located once (its links resolved below the root) and its entries' links read
    there: a closure's directory holds a thousand of them."""
    real = os.fspath(root.open_path(host_dir))
    if not os.path.isdir(real):
        return None
    entries: list[UnitEntry] = []
    for name in _list(real):
        host_path = f"{host_dir}/{name}"
        if is_unit_name(name):
            entries.append(_top_entry(root, real, host_path, name, digests))
        elif name.endswith(LINK_DIR_SUFFIXES) or name.endswith(DROPIN_DIR_SUFFIX):
            sub = os.fspath(root.open_path(host_path))
            is_dropin = name.endswith(DROPIN_DIR_SUFFIX)
            for child in _list(sub) if os.path.isdir(sub) else []:
                child_path = f"{host_path}/{child}"
                rel = f"{name}/{child}"
                if is_dropin and child.endswith(".conf"):
                    digest = digest_of(root, child_path) if digests else ""
                    entries.append(UnitEntry(rel, EntryKind.DROPIN, child_path, _readlink_in(sub, child), digest))
                elif not is_dropin and is_unit_name(child):
                    entries.append(UnitEntry(rel, EntryKind.LINK, child_path, _readlink_in(sub, child)))
    return UnitDir(host_dir, tuple(entries))


def with_digests(root: Root, unit_dir: UnitDir, rels: Iterable[str]) -> UnitDir:
    """The same directory with the content digest filled in for the given entries."""
    wanted = set(rels)
    entries = tuple(
        UnitEntry(e.rel, e.kind, e.host_path, e.target, digest_of(root, e.host_path))
        if e.rel in wanted and not e.digest and e.kind is not EntryKind.LINK
        else e
        for e in unit_dir.entries
    )
    return UnitDir(unit_dir.host_dir, entries)


# -- parsing a unit file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitSetting:
    section: str
    key: str
    value: str


_SECTION = re.compile(r"\[([^\[\]]+)\]")
_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_unit_file(text: str, source: str = "unit") -> tuple[tuple[UnitSetting, ...], tuple[str, ...]]:
    """systemd's INI dialect: [Section], Key=Value, comments (# ;), backslash continuations."""
    settings: list[UnitSetting] = []
    problems: list[str] = []
    section = ""
    pending = ""  # a continued line being joined
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending:
            start = lineno
            if not line or line[0] in "#;":
                continue
        elif line[:1] in ("#", ";"):
            continue  # a comment inside a continuation is skipped, as systemd does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        _parse_line(line, section, f"{source}:{start}", settings, problems)
        if (match := _SECTION.fullmatch(line)) is not None:
            section = match.group(1)
    if pending:
        _parse_line(pending.strip(), section, f"{source}:{start}", settings, problems)
    return tuple(settings), tuple(problems)


def _parse_line(line: str, section: str, where: str, settings: list[UnitSetting], problems: list[str]) -> None:
    if line.startswith("["):
        if _SECTION.fullmatch(line) is None:
            problems.append(f"{where}: malformed section header")
        return
    key, sep, value = line.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        problems.append(f"{where}: not a Key=Value line")
    elif not section:
        problems.append(f"{where}: setting outside any section")
    else:
        settings.append(UnitSetting(section, key, value.strip()))


def _yes(value: str) -> bool:
    return value.strip().lower() in ("1", "yes", "true", "on")


def summarize(settings: Iterable[UnitSetting]) -> UnitFile:
    """Fold settings in order: later values win, an empty ExecStart=/Listen*= resets the list."""
    type_, remain, conditional = "", False, False
    exec_start: list[str] = []
    listen: list[str] = []
    for s in settings:
        if s.key.startswith(("Condition", "Assert")) and s.section == "Unit":
            conditional = True
        elif s.key == "Type" and s.section == "Service":
            type_ = s.value
        elif s.key == "RemainAfterExit" and s.section == "Service":
            remain = _yes(s.value)
        elif s.key == "ExecStart" and s.section == "Service":
            exec_start = [*exec_start, s.value] if s.value else []
        elif s.key.startswith("Listen") and s.section == "Socket":
            # An empty assignment of any Listen*= resets all of them (systemd.socket(5)).
            listen = [*listen, f"{s.key}={s.value}"] if s.value else []
    return UnitFile(type_, remain, conditional, tuple(exec_start), tuple(listen))


def read_unit_file(root: Root, host_paths: Iterable[str]) -> tuple[UnitFile | None, tuple[str, ...]]:
    """Read a fragment and its drop-ins (in order) into one summary; None when the fragment is unreadable."""
    settings: list[UnitSetting] = []
    problems: list[str] = []
    for index, path in enumerate(host_paths):
        try:
            text = root.read_text(path)
        except OSError as exc:
            if index == 0:
                return None, (f"{path}: cannot read: {exc.strerror or exc}",)
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        found, bad = parse_unit_file(text, path)
        settings.extend(found)
        problems.extend(bad)
    return summarize(settings), tuple(problems)
