"""A finding to feed the daemon's pieces in tests."""

from __future__ import annotations

from nixdrift.models import Category, Finding, Fix, Kind, Severity


def finding(**kw: object) -> Finding:
    base = dict(
        id="etc/motd",
        category=Category.ETC,
        subject="/etc/motd",
        kind=Kind.CHANGED,
        expected="a",
        actual="b",
        message="/etc/motd: content differs",
        fix=Fix(nix="", command="", safe=False),
        severity=Severity.HIGH,
        evidence={"path": "/etc/motd"},
    )
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]
