"""The firewall ruleset: `nft -j list ruleset` or `iptables-save` / `ip6tables-save`.

Live (root "/") the tools are run; under `--root` only the captured files in DIR/.nixdrift/ are
read. The declared backend decides which one is tried first; the other is the fallback (an
iptables host whose iptables-save is missing can still be read through nft, and the other way).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nixdrift import process
from nixdrift.capture.fwparse import read_iptables_save
from nixdrift.capture.needs import FirewallNeeds
from nixdrift.capture.nftparse import read_nft_json
from nixdrift.capture.parsed import Parsed, reason
from nixdrift.errors import NixdriftError
from nixdrift.live.firewall import FirewallLive, FwAccept, FwBase, FwRecord
from nixdrift.models import Category, Section
from nixdrift.rootfs import SNAPSHOT_DIR, Root

SNAPSHOT_PATHS: tuple[str, ...] = ()  # not files: see snapshot_extra
NFT_FILE = "nft.json"
IPT_FILES = (("iptables-save.txt", "ipv4"), ("ip6tables-save.txt", "ipv6"))
_COMMANDS = {
    NFT_FILE: ("nft", "-j", "list", "ruleset"),
    "iptables-save.txt": ("iptables-save",),
    "ip6tables-save.txt": ("ip6tables-save",),
}


class _Unreadable(Exception):
    """A ruleset that is there but cannot be read (refused, cut short, not a ruleset): no verdict."""


def _run(argv: Sequence[str]) -> str | None:
    try:
        return process.run(argv, timeout=60).stdout
    except NixdriftError:
        return None


def _read(root: Root, name: str) -> str | None:
    """A source's text: run live, or read from the snapshot; None when it is not there."""
    if root.is_live:
        return _run(_COMMANDS[name])
    try:
        return root.read_captured(name).decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unreadable(f"{root.captured(name)} cannot be read: {reason(exc)}") from exc


def _source(root: Root, name: str) -> str:
    return " ".join(_COMMANDS[name]) if root.is_live else str(root.captured(name))


def _parsed(root: Root, name: str, parsed: Parsed[FwRecord]) -> Parsed[FwRecord]:
    if (why := parsed.unjudged) is not None:
        raise _Unreadable(f"{_source(root, name)}: {why}")
    return parsed


def _section(backend: str, source: str, records: Sequence[FwRecord], problems: Sequence[str]) -> Section[FirewallLive]:
    live = FirewallLive(
        backend=backend,
        source=source,
        bases=tuple(r for r in records if isinstance(r, FwBase)),
        accepts=tuple(r for r in records if isinstance(r, FwAccept)),
    )
    return Section(Category.FIREWALL, live, problems=tuple(problems))


def _nftables(root: Root) -> Section[FirewallLive] | None:
    text = _read(root, NFT_FILE)
    if text is None:
        return None
    parsed = _parsed(root, NFT_FILE, read_nft_json(text))
    return _section("nftables", _source(root, NFT_FILE), parsed.records, parsed.problems)


def _iptables(root: Root) -> Section[FirewallLive] | None:
    records: list[FwRecord] = []
    problems: list[str] = []
    sources: list[str] = []
    for name, family in IPT_FILES:
        text = _read(root, name)
        if text is None:
            continue
        parsed = _parsed(root, name, read_iptables_save(text, family))
        records.extend(parsed.records)
        problems.extend(parsed.problems)
        sources.append(_COMMANDS[name][0] if root.is_live else str(root.captured(name)))
    if not sources:
        return None
    return _section("iptables", ", ".join(sources), records, problems)


def capture(root: Root, declared: FirewallNeeds) -> Section[FirewallLive]:
    if declared.firewall.backend not in ("iptables", "nftables"):  # firewalld keeps its own tables
        reason = f"networking.firewall.backend = {declared.firewall.backend}: only iptables and nftables are compared"
        return Section.missing(Category.FIREWALL, reason)
    readers = (_nftables, _iptables) if declared.firewall.backend == "nftables" else (_iptables, _nftables)
    for reader in readers:
        try:
            section = reader(root)
        except _Unreadable as exc:  # never fall back: the other backend's view would be a wrong verdict
            return Section.missing(Category.FIREWALL, str(exc))
        if section is not None:
            return section
    where = "nft and iptables-save could not be run" if root.is_live else f"neither {NFT_FILE} nor iptables-save.txt"
    if not root.is_live:
        where += f" in {root.prefix / SNAPSHOT_DIR}"
    return Section.missing(Category.FIREWALL, f"no firewall ruleset: {where}")


def snapshot_extra(out_dir: Path) -> list[str]:
    """Capture the live rulesets into OUT/.nixdrift/; the names of the files written."""
    written: list[str] = []
    for name, argv in _COMMANDS.items():
        text = _run(argv)
        if text is None:
            continue
        target = out_dir / SNAPSHOT_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        written.append(name)
    return written
