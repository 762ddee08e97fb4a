"""The firewall as records: the NixOS firewall per address family and what it accepts, whether
read from nft's JSON or from iptables-save."""

from __future__ import annotations

from dataclasses import dataclass

from nixdrift.declared.model import PortRange


@dataclass(frozen=True, slots=True)
class FwBase:
    """The NixOS firewall in one address family ("ipv4", "ipv6" or "inet")."""

    family: str
    hooked: bool  # the chain sees input traffic (INPUT -j nixos-fw / a hook input chain)
    refuses: bool  # what is not accepted is dropped or rejected
    detail: str = ""  # why not, in words


@dataclass(frozen=True, slots=True)
class FwAccept:
    """A rule or set element that accepts new input traffic.

    `proto` None with no ports accepts everything (on `interface`, or everywhere when None).
    """

    family: str
    proto: str | None
    ports: tuple[PortRange, ...]
    interface: str | None
    conditions: str  # other matches that narrow it (source address, limit...), "" when none
    origin: str  # "rule" or "temp-ports" (or the name of another set)
    revert: tuple[str, ...]  # argv that removes it
    text: str  # the rule as a person reads it


FwRecord = FwBase | FwAccept


def ports_text(ports: tuple[PortRange, ...]) -> str:
    return ", ".join(str(r.start) if r.start == r.end else f"{r.start}-{r.end}" for r in ports)


def norm_iface(name: str) -> str:
    """nft lists a wildcard interface as `ve-*`, iptables as `ve-+`: one spelling."""
    return name[:-1] + "+" if name.endswith("*") else name


@dataclass(frozen=True, slots=True)
class FirewallLive:
    backend: str  # which ruleset was read: "nftables" or "iptables"
    source: str  # the command run or the captured files read
    bases: tuple[FwBase, ...]  # the NixOS firewall per address family, where it exists
    accepts: tuple[FwAccept, ...]
