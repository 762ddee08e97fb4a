"""The one constructor comparators use for findings: severity and impact come from the policy rule.

Every finding is born here, so this is where host data is made safe to show, store and send: the
credentials of URL-like values are stripped everywhere, and the one-line values (id, subject,
expected, actual, message) hold no control character (`sanitized`): journald, the history
database and every sink get them safe whatever a comparator passed.
The escaping helpers live on the ground floor (`nixdrift.text`) and are re-exported for comparators.
"""

from __future__ import annotations

from collections.abc import Mapping

from nixdrift.models import Category, Finding, Fix, Kind, Severity
from nixdrift.policy import rule
from nixdrift.redact import strip_userinfo
from nixdrift.text import display, nix_attr, nix_str, printable, quote, sh

__all__ = ["finding", "nix_attr", "nix_str", "printable", "quote", "sanitized", "sh"]


def sanitized(text: str) -> str:
    """A value for a report, the history or a remote endpoint: no URL credentials, one printable line."""
    return display(strip_userinfo(text))


def _fix(nix: str, command: str, safe: bool, reason: str) -> Fix:
    """The fix without credentials; a command that had to lose some is never run automatically."""
    stripped = strip_userinfo(command)
    if stripped != command:
        safe, reason = False, "credentials were removed from this command; complete it by hand"
    return Fix(nix=strip_userinfo(nix), command=stripped, safe=safe, reason=sanitized(reason))


def finding(
    *,
    rule_name: str,
    id: str,
    category: Category,
    subject: str,
    kind: Kind,
    expected: str,
    actual: str,
    message: str,
    nix: str = "",
    command: str = "",
    safe: bool = False,
    reason: str = "",
    evidence: Mapping[str, str] | None = None,
    graded: tuple[Severity, str] | None = None,
) -> Finding:
    """A finding; its severity and impact are the policy rule's (`graded`: a table of rules of its
    own, such as the Kubernetes checks')."""
    severity, impact = graded if graded is not None else rule(rule_name)
    if not safe and not reason:
        reason = "reverting by hand needs a decision" if command else "no automatic revert exists"
    return Finding(
        id=sanitized(id),
        category=category,
        subject=sanitized(subject),
        kind=kind,
        expected=sanitized(expected),
        actual=sanitized(actual),
        message=sanitized(message),
        impact=impact,
        severity=severity,
        fix=_fix(nix, command, safe, reason),
        # evidence keeps each comparator's own escaping (printable): sinks show it with display()
        evidence={"rule": rule_name, **{k: strip_userinfo(v) for k, v in (evidence or {}).items()}},
    )
