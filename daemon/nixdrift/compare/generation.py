"""Is the running system the one the flake declares, the one that booted, the one the profile holds?"""

from __future__ import annotations

from nixdrift.compare.common import finding, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.live.generation import CURRENT, SYSTEM_PROFILE, LiveGeneration
from nixdrift.models import Category, Finding, Kind, Section

CAT = Category.GENERATION


def _rebuild(declared: DeclaredState) -> str:
    return sh("nixos-rebuild", "switch", "--flake", f"{declared.flake.reference}#{declared.host}")


def _label(path: str | None, number: int | None) -> str:
    if path is None:
        return "none"
    return f"{path} (generation {number})" if number is not None else path


def _not_declared(declared: DeclaredState, live: LiveGeneration) -> Finding | None:
    if live.current is None or declared.toplevel is None or live.current == declared.toplevel:
        return None
    message = f"The running system {live.current} is not the one the flake declares ({declared.toplevel})."
    evidence = {"path": CURRENT, "declared_in_store": "yes" if live.declared_built else "no"}
    if not live.declared_built:
        # the same fact as rule generation-not-built, folded into this finding's message and evidence
        message += " The declared system is not in the store: it has never been built or deployed here."
        evidence["also"] = "generation-not-built"
    if live.current_number is not None:
        evidence["generation"] = str(live.current_number)
    return finding(
        rule_name="generation-not-declared",
        id="generation/current-system/declared",
        category=CAT,
        subject=CURRENT,
        kind=Kind.CHANGED,
        expected=declared.toplevel,
        actual=_label(live.current, live.current_number),
        message=message,
        command=_rebuild(declared),
        reason="switching the system restarts services; run it when the flake is what you want",
        evidence=evidence,
    )


def _reboot_pending(live: LiveGeneration) -> Finding | None:
    if live.current is None or live.booted is None:
        return None
    if live.current_boot is not None and live.booted_boot is not None:
        # as nixos-rebuild decides: only kernel, initrd and modules need a reboot to become live
        if live.current_boot == live.booted_boot:
            return None
        detail = "its kernel, initrd or kernel modules differ from the booted ones"
    elif live.current == live.booted:
        return None
    else:
        detail = "it differs from the booted system"
    return finding(
        rule_name="reboot-pending",
        id="generation/booted-system/reboot",
        category=CAT,
        subject="/run/booted-system",
        kind=Kind.CHANGED,
        expected=live.current,
        actual=live.booted,
        message=f"The running system {live.current} is not fully live until a reboot: {detail}.",
        command=sh("systemctl", "reboot"),
        reason="a reboot interrupts the host",
        evidence={"path": "/run/booted-system", "current": live.current},
    )


def _profile_not_current(declared: DeclaredState, live: LiveGeneration) -> Finding | None:
    if live.current is None or live.profile is None or live.profile == live.current:
        return None
    return finding(
        rule_name="profile-not-current",
        id="generation/system-profile/current",
        category=CAT,
        subject=SYSTEM_PROFILE,
        kind=Kind.CHANGED,
        expected=_label(live.current, live.current_number),
        actual=_label(live.profile, live.profile_number),
        message=(
            f"The system profile points at {_label(live.profile, live.profile_number)}, not at the running "
            f"system {live.current}: the next boot starts another system."
        ),
        command=_rebuild(declared),
        reason="switching the system restarts services; run it when the flake is what you want",
        evidence={"path": SYSTEM_PROFILE, "current": live.current},
    )


def compare(declared: DeclaredState, live: Section[LiveGeneration]) -> tuple[Finding, ...]:
    state = live.data
    if state is None:
        return ()
    found = (_not_declared(declared, state), _reboot_pending(state), _profile_not_current(declared, state))
    return tuple(f for f in found if f is not None)
