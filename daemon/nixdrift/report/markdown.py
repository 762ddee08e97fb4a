"""`drift-report.md`: the operator's drift report.

Host data (paths, unit names, messages quoting them) is untrusted: a file name may hold backticks,
pipes, newlines or HTML. Prose goes through `md_text()` (one line, Markdown characters escaped),
code through `code_block()`/`code_span()` with a fence longer than any backtick run inside.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nixdrift.models import Category, Finding, Report, Severity, sort_findings
from nixdrift.report.text import layout_text, safe_line
from nixdrift.text import display

SEVERITIES = tuple(sorted(Severity, reverse=True))  # critical first
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~&$])")
_LIST_MARKER = re.compile(r"^(\s*(?:\d+(?=[.)])|(?=[-+=])))(.)")  # "- x", "1. x", "===" would start a list or heading

# What an operator does about drift in each category, beyond the per-finding command.
ADVICE: Mapping[Category, str] = {
    Category.GENERATION: "Deploy the declared system (`nixos-rebuild switch --flake REF#HOST`, or `boot` and "
    "reboot) so that what runs is what the flake says.",
    Category.PACKAGES: "Move the software you want into `environment.systemPackages` (or the user's `packages`); "
    "remove the rest from the imperative profiles.",
    Category.SERVICES: "Declare the units you want under `systemd.services`; undo runtime enables, masks and "
    "starts you do not want.",
    Category.SERVICE_CONFIG: "Move unit overrides into `systemd.services.<name>` and delete hand-made drop-ins, "
    "then rebuild.",
    Category.USERS: "Declare accounts and memberships in `users.users` / `users.groups`, or remove them; "
    "review administrative groups first.",
    Category.ETC: "Declare wanted files with `environment.etc`; a rebuild restores managed files edited by hand.",
    Category.NETWORK: "Set `networking.hostName` / `networking.nameservers`, or rebuild to restore them.",
    Category.FIREWALL: "Close ports opened by hand (a rebuild reloads the declared ruleset) or declare them in "
    "`networking.firewall`.",
    Category.EXPOSURE: "Stop undeclared listeners or bind them to loopback; declare the services you keep and "
    "their firewall ports.",
    Category.MOUNTS: "Declare mounts in `fileSystems` / `swapDevices`, or unmount what should not be there.",
    Category.REPO: "Commit and push the configuration this host runs, so it can be reviewed and reproduced.",
    # a cluster's (`nixdrift kube`): the manifests in git are the truth
    Category.KUBE_RESOURCES: "Put the limits, requests and HPA bounds you want in the manifests, or re-apply them.",
    Category.KUBE_ENV: "Declare the variables in the manifests (Secrets by reference), or re-apply them.",
    Category.KUBE_SECRETS: "Create the Secrets pods need, align their keys with the manifests, rotate old ones "
    "and delete orphans.",
    Category.KUBE_CRONJOBS: "Declare the CronJobs you want (schedule, suspend, image); delete the others.",
    Category.KUBE_NETWORK_POLICIES: "Re-apply the declared NetworkPolicies; declare any rule you keep.",
    Category.KUBE_RBAC: "Review access first: re-apply the declared roles and bindings, delete undeclared bindings.",
    Category.KUBE_SPEC: "Re-apply the manifests (`kubectl apply --server-side`), or commit the live values.",
    Category.KUBE_ORPHANS: "Apply the missing objects; delete or declare the ones no manifest knows.",
    Category.KUBE_MANIFESTS: "Commit the manifests the cluster is checked against.",
    Category.KUBE_CHECKS: "Make the cluster checks work again (credentials, API server, RBAC), or lengthen them.",
}


def md_text(text: str) -> str:
    """Untrusted text as one line of inert Markdown."""
    return _LIST_MARKER.sub(r"\1\\\2", _MD_SPECIAL.sub(r"\\\1", safe_line(text)))


def visible(text: str) -> str:
    """Text for a code block: exact except control and format characters and undecodable bytes, shown
    escaped as everywhere else (`text.display`), so the file stays valid UTF-8 and holds no terminal
    escapes or bidi controls; newlines and tabs are kept."""
    return "\n".join("\t".join(display(part) for part in line.split("\t")) for line in text.split("\n"))


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def code_block(text: str, lang: str) -> list[str]:
    body = visible(text)
    fence = _fence(body)
    return [f"{fence}{lang}", *body.split("\n"), fence]


def code_span(text: str) -> str:
    body = visible(text).replace("\n", "\\n").replace("\t", "\\t")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {body} {ticks}"  # CommonMark strips one space each side


def risk_level(report: Report) -> str:
    active = report.active
    return max(f.severity for f in active).label if active else "none"


def executive_summary(report: Report) -> list[str]:
    active, accepted = report.active, len(report.findings) - len(report.active)
    unavailable = [c for c, s in report.categories.items() if s.startswith("unavailable")]
    sentence = (
        f"**Overall risk: {risk_level(report).upper()}.** {len(active)} active finding"
        f"{'' if len(active) == 1 else 's'}, {len(report.at_or_above_threshold())} at or above the alert "
        f"threshold ({report.threshold.label})"
    )
    if accepted:
        sentence += f"; {accepted} accepted"
    if unavailable:
        sentence += f"; {len(unavailable)} categor{'y' if len(unavailable) == 1 else 'ies'} could not be scanned"
    lines = ["## Executive summary", "", sentence + ".", "", "| severity | findings |", "|---|---:|"]
    lines += [f"| {label} | {n} |" for label, n in report.summary().items()]
    per_category = {c: sum(1 for f in active if f.category == c) for c in report.categories}
    lines += ["", "| category | status | findings |", "|---|---|---:|"]
    lines += [
        f"| {c.value} | {md_text(status)} | {per_category[c]} |"
        for c, status in sorted(report.categories.items(), key=lambda kv: kv[0].value)
    ]
    gens = report.generations
    lines += [
        "",
        f"- **Declared generation:** {md_text(gens.declared or 'unknown')}",
        f"- **Current generation:** {md_text(gens.current or 'unknown')}",
        f"- **Booted generation:** {md_text(gens.booted or 'unknown')}",
    ]
    if report.layout:
        lines.append(f"- **NixOS layout:** {md_text(layout_text(report.layout))}")
    return lines


def finding_section(f: Finding) -> list[str]:
    lines = [f"### {md_text(f.id)}", ""]
    lines += [
        f"- **Drift:** {md_text(f.message)}",
        f"- **Category:** {f.category.value} ({f.kind.value})",
        f"- **Declared (expected):** {md_text(f.expected or '-')}",
        f"- **Actual:** {md_text(f.actual or '-')}",
    ]
    if f.impact:
        lines.append(f"- **Impact:** {md_text(f.impact)}")
    if f.evidence:
        evidence = "; ".join(f"{md_text(k)}: {md_text(v)}" for k, v in sorted(f.evidence.items()))
        lines.append(f"- **Evidence:** {evidence}")
    seen = f"{f.count} time{'' if f.count == 1 else 's'}"
    if f.first_seen:
        seen += f", first {md_text(f.first_seen)}, last {md_text(f.last_seen or f.first_seen)}"
    lines += [f"- **Seen:** {seen} ({f.source.value})", ""]
    if f.fix.nix:
        lines += ["To keep the live state, declare it in the flake:", "", *code_block(f.fix.nix, "nix"), ""]
    if f.fix.command:
        if f.fix.safe:
            lines.append("To revert (**safe** to run automatically):")
        else:
            why = md_text(f.fix.reason or "needs a decision")
            lines.append(f"To revert (**not safe** to run automatically: {why}):")
        lines += ["", *code_block(f.fix.command, "sh"), ""]
    elif not f.fix.nix:
        lines += [f"No automatic fix: {md_text(f.fix.reason or 'review by hand')}.", ""]
    return lines[:-1]  # no trailing blank: the caller separates sections


def _action(f: Finding) -> str:
    if f.fix.command and f.fix.safe:
        return f"{md_text(f.id)}: revert with {code_span(f.fix.command)}"
    if f.fix.command:
        keep = "keep it (declare the Nix snippet above)" if f.fix.nix else "keep it"
        return (
            f"{md_text(f.id)}: decide whether to {keep} or revert with "
            f"{code_span(f.fix.command)} ({md_text(f.fix.reason or 'needs a decision')})"
        )
    if f.fix.nix:
        return f"{md_text(f.id)}: declare it in the flake (snippet above) or undo it by hand"
    return f"{md_text(f.id)}: investigate ({md_text(f.fix.reason or 'no automatic fix')})"


def recommended_actions(report: Report) -> list[str]:
    lines = ["## Recommended actions", ""]
    active = sort_findings(report.active)
    n = 0
    for severity in SEVERITIES:
        for category in sorted({f.category for f in active if f.severity == severity}, key=lambda c: c.value):
            group = [f for f in active if f.severity == severity and f.category == category]
            n += 1
            item = f"{n}. "
            lines.append(
                f"{item}**{severity.label.capitalize()} · {category.value}** ({len(group)} finding"
                f"{'' if len(group) == 1 else 's'}): {ADVICE[category]}"
            )
            lines += [f"{' ' * len(item)}- {_action(f)}" for f in group]
    unavailable = [(c, s) for c, s in report.categories.items() if s.startswith("unavailable")]
    for category, status in sorted(unavailable, key=lambda cs: cs[0].value):
        n += 1
        lines.append(f"{n}. **Restore visibility · {category.value}**: drift there goes unseen ({md_text(status)}).")
    if n == 0:
        lines.append("No action needed: the host matches its flake.")
    return lines


def render(report: Report) -> str:
    flake = report.flake
    revision = md_text(flake.revision) if flake.revision else "unknown revision"
    lines = [
        f"# Drift report: {md_text(report.host)}, {md_text(report.generated_at)}",
        "",
        f"Generated {md_text(report.generated_at)} from flake {md_text(flake.reference)} at {revision}"
        f"{' (dirty: uncommitted changes)' if flake.dirty else ''}.",
        "",
        *executive_summary(report),
    ]
    active = sort_findings(report.active)
    for severity in SEVERITIES:
        group = [f for f in active if f.severity == severity]
        if group:
            lines += ["", f"## {severity.label.capitalize()} findings ({len(group)})"]
            for f in group:
                lines += ["", *finding_section(f)]
    lines += ["", *recommended_actions(report)]
    accepted = sort_findings([f for f in report.findings if f.accepted])
    if accepted:
        lines += ["", f"## Accepted findings ({len(accepted)})", ""]
        lines += [f"- {f.severity.label} · {md_text(f.id)}: {md_text(f.message)}" for f in accepted]
    if report.problems:
        lines += ["", f"## Problems while scanning ({len(report.problems)})", ""]
        lines += [f"- {md_text(p)}" for p in report.problems]
    return "\n".join(lines) + "\n"
