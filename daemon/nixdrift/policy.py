"""Policy: the default severity of every kind of drift, overrides, exceptions and the threshold.

Comparators name a rule (`RULES` below) for each finding; the rule fixes the default severity and
the impact text an operator reads. A config file may override severities by glob on the finding id
and silence findings by glob on the id or the path (exceptions).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nixdrift.models import Finding, Severity

C, H, M, L, N = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

# rule -> (default severity, impact). Critical widens exposure; high is imperative state the
# flake cannot reproduce; medium is user, group and file differences; low is cosmetic.
# fmt: off
RULES: Mapping[str, tuple[Severity, str]] = {
    # generation
    "generation-not-declared": (H, "The running system is not the one the flake declares; a rebuild or reboot will change it."),  # noqa: E501
    "generation-not-built": (M, "The declared system is not in the local store, so it has never been deployed here."),
    "reboot-pending": (M, "The booted system differs from the current one; kernel and early-boot changes are not live yet."),  # noqa: E501
    "profile-not-current": (M, "The system profile points at another generation than the running one; the next boot changes the system."),  # noqa: E501
    # packages
    "imperative-package": (H, "Software installed outside the flake is lost on reinstall and invisible to review."),
    "package-missing": (M, "A declared package is not in the running system's environment."),
    # services
    "unit-enabled-by-hand": (H, "A unit enabled outside the flake starts at boot without review."),
    "unit-masked-by-hand": (H, "A declared unit is masked by hand and will not start."),
    "unit-started-by-hand": (H, "A unit runs that the flake does not declare or want."),
    "unit-stopped": (M, "A declared, wanted unit is not running."),
    "unit-transient": (M, "A transient unit was created at run time (systemd-run) outside the flake."),
    "unit-file-unmanaged": (H, "A unit file outside the closure changes what systemd runs."),
    # service config
    "unit-changed": (H, "The unit systemd loaded differs from the one the flake built."),
    "dropin-unmanaged": (H, "A drop-in outside the closure overrides the declared unit."),
    # users and groups
    "wheel-member": (C, "A new member of an administrative group can become root."),
    "user-unmanaged": (M, "An account exists that the flake does not declare."),
    "user-missing": (M, "A declared account does not exist."),
    "user-changed": (M, "An account's uid, group, home or shell differs from the declaration."),
    "group-member": (M, "Group membership differs from the declaration, changing what a user may access."),
    "group-unmanaged": (M, "A group exists that the flake does not declare."),
    "group-missing": (M, "A declared group does not exist."),
    "group-changed": (M, "A group's gid differs from the declaration."),
    "password-changed": (M, "An account's password presence differs from the declaration (values are never read)."),
    # etc
    "etc-sensitive": (H, "A security-relevant file in /etc (sudo, ssh, pam, security) differs from the declaration."),
    "etc-changed": (M, "A managed file in /etc was edited or replaced by hand and no longer matches the flake."),
    "etc-unmanaged": (M, "A file in /etc that the flake does not declare; it is lost on reinstall."),
    "etc-missing": (M, "A file the flake declares in /etc is absent."),
    "etc-overmounted": (H, "Something is mounted over a file of the /etc overlay, hiding what the flake declares."),
    # layout (system.etc.overlay, userborn, sysusers)
    "layout-mismatch": (H, "The host's /etc or accounts are not made the way the flake declares (overlay, image, backend)."),  # noqa: E501
    # network
    "hostname-changed": (L, "The hostname differs from networking.hostName."),
    "dns-changed": (L, "Name resolution differs from networking.nameservers."),
    # firewall
    "firewall-disabled": (C, "The firewall the flake enables is not active: every listener is reachable."),
    "port-opened": (C, "A port is open in the firewall that the flake does not allow."),
    "port-opened-extra": (H, "An undeclared port is open; the flake's own extra firewall rules may be what opens it."),
    "port-closed": (M, "A port the flake allows is not open in the firewall."),
    "port-temporary": (L, "A port opened on purpose with nixos-firewall-tool (temp-ports); it closes at reboot or reload."),  # noqa: E501
    "firewall-unavailable": (N, "The firewall ruleset could not be read."),
    # exposure
    "undeclared-listener": (C, "A process listens on a non-loopback address with nothing declaring it."),
    "local-listener": (L, "A process listens on loopback with nothing declaring it."),
    # mounts
    "mount-unmanaged": (M, "A filesystem is mounted that the flake does not declare."),
    "mount-missing": (M, "A declared filesystem is not mounted."),
    "mount-changed": (L, "A declared filesystem is mounted from another device, type or with other options."),
    "swap-unmanaged": (L, "Swap is active that the flake does not declare."),
    # repo
    "repo-uncommitted": (H, "The host runs configuration that is not committed: it cannot be reviewed or reproduced."),
    "repo-untracked": (M, "Files in the config repository are not tracked by git (nix ignores them)."),
    "repo-unpushed": (L, "Commits in the config repository are not pushed; they exist only on this host."),
    # scanning itself
    "scan-problem": (N, "Part of the host could not be read; drift there would go unseen."),
}


def rule(name: str) -> tuple[Severity, str]:
    """The default severity and impact of a named rule (KeyError for an unknown rule)."""
    return RULES[name]


@dataclass(frozen=True, slots=True)
class Policy:
    threshold: Severity = Severity.LOW
    exceptions: tuple[str, ...] = ()  # globs on finding ids and evidence paths
    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)  # glob on id -> severity

    def excepted(self, finding: Finding) -> bool:
        candidates = [finding.id, finding.path] if finding.path else [finding.id]
        return any(fnmatch.fnmatchcase(c, g) for g in self.exceptions for c in candidates)

    def severity_of(self, finding: Finding) -> Severity:
        for pattern, severity in self.severity_overrides.items():
            if fnmatch.fnmatchcase(finding.id, pattern):
                return severity
        return finding.severity

    def apply(self, findings: Iterable[Finding]) -> tuple[Finding, ...]:
        """Drop excepted findings and apply severity overrides; the threshold applies at the sinks."""
        kept: list[Finding] = []
        for f in findings:
            if self.excepted(f):
                continue
            severity = self.severity_of(f)
            kept.append(f if severity == f.severity else f.with_(severity=severity))
        return tuple(kept)
