"""drift-report.md: what an operator reads, and host data that must not break its Markdown."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from factories import make_report as report_of
from factories import port_opened
from nixdrift.compare.common import finding, sh
from nixdrift.models import Category, Finding, Generations, Kind, Report, Severity
from nixdrift.report import markdown, render


def etc_unmanaged(path: str = "/etc/foo.conf", message: str | None = None):
    return finding(
        rule_name="etc-unmanaged",
        id=f"etc/{path}",
        category=Category.ETC,
        subject=path,
        kind=Kind.UNMANAGED,
        expected="absent",
        actual="regular file",
        message=message or f"{path} is not declared",
        nix='environment.etc."foo.conf".text = "a\\nb";',
        command=sh("rm", "--", path),
        evidence={"path": path},
    )


def package():
    return finding(
        rule_name="imperative-package",
        id="packages/root/htop",
        category=Category.PACKAGES,
        subject="htop",
        kind=Kind.UNMANAGED,
        expected="absent",
        actual="htop-3.3.0",
        message="htop installed with nix-env",
        command=sh("nix-env", "-e", "htop"),
    )


def make_report(*findings: Finding, categories=None, problems=()) -> Report:
    a_sys = "/nix/store/a-sys"
    gens = Generations(a_sys, a_sys, a_sys)
    return report_of(*findings, categories=categories, problems=problems, threshold=Severity.MEDIUM, generations=gens)


def section(md: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = md.index(heading + "\n") + len(heading) + 1
    nxt = re.search(rf"^#{{1,{len(level)}}} ", md[start:], re.M)
    return md[start : start + nxt.start()] if nxt else md[start:]


def test_title_names_host_and_time() -> None:
    md = render(make_report(), "markdown")
    assert md.startswith("# Drift report: web1, 2024-05-01T10:00:00Z\n")


def test_executive_summary_counts_risk_and_category_table() -> None:
    cats = {Category.FIREWALL: "drift", Category.PACKAGES: "drift", Category.MOUNTS: "unavailable: no mountinfo"}
    md = render(make_report(port_opened(), package(), categories=cats), "markdown")
    summary = section(md, "## Executive summary")
    assert "**Overall risk: CRITICAL.** 2 active findings, 2 at or above the alert threshold (medium)" in summary
    assert "| critical | 1 |" in summary and "| high | 1 |" in summary and "| medium | 0 |" in summary
    assert "| firewall | drift | 1 |" in summary
    assert "| mounts | unavailable: no mountinfo | 0 |" in summary


def test_risk_level_is_the_worst_active_severity() -> None:
    assert markdown.risk_level(make_report()) == "none"
    assert markdown.risk_level(make_report(package())) == "high"
    assert markdown.risk_level(make_report(package(), port_opened().with_(accepted=True))) == "high"


def test_sections_per_severity_critical_first_with_state_impact_and_fixes() -> None:
    md = render(make_report(etc_unmanaged(), port_opened(), package()), "markdown")
    assert md.index("## Critical findings (1)") < md.index("## High findings (1)") < md.index("## Medium findings (1)")
    crit = section(md, "### firewall/tcp/8080/open")
    assert "- **Declared (expected):** closed" in crit
    assert "- **Actual:** open" in crit
    assert "- **Impact:** A port is open in the firewall that the flake does not allow." in crit
    assert "```nix\nnetworking.firewall.allowedTCPPorts = [ 8080 ];\n```" in crit
    assert "**safe** to run automatically" in crit
    assert "```sh\nnft delete element inet nixos-fw temp-ports '{ tcp . 8080 }'\n```" in crit
    medium = section(md, "### etc//etc/foo.conf")
    assert "**not safe** to run automatically: reverting by hand needs a decision" in medium


def test_recommended_actions_are_ordered_by_urgency_then_category() -> None:
    cats = {Category.ETC: "drift", Category.FIREWALL: "drift", Category.PACKAGES: "drift", Category.EXPOSURE: "ok"}
    report = make_report(etc_unmanaged(), port_opened(), port_opened(22), package(), categories=cats)
    actions = section(render(report, "markdown"), "## Recommended actions")
    items = re.findall(r"^\d+\. \*\*(.+?)\*\*", actions, re.M)
    assert items == ["Critical · firewall", "High · packages", "Medium · etc"]
    assert "(2 findings)" in actions
    assert "firewall/tcp/22/open: revert with ` nft delete element" in actions
    assert "packages/root/htop: decide whether to keep it" in actions


def test_unavailable_categories_become_an_action_and_no_drift_says_so() -> None:
    md = render(make_report(categories={Category.EXPOSURE: "unavailable: psutil denied"}), "markdown")
    assert "**Restore visibility · exposure**" in section(md, "## Recommended actions")
    clean = render(make_report(categories={Category.ETC: "ok"}), "markdown")
    assert "No action needed" in clean
    assert "**Overall risk: NONE.**" in clean


def test_accepted_findings_and_problems_get_their_own_sections() -> None:
    md = render(make_report(package().with_(accepted=True), problems=["etc: /etc/.clean:2: odd"]), "markdown")
    assert "## High findings" not in md
    assert "- high · packages/root/htop: htop installed with nix-env" in section(md, "## Accepted findings (1)")
    assert "- etc: /etc/.clean:2: odd" in section(md, "## Problems while scanning (1)")


HOSTILE = "/etc/a`b|c\n## Injected heading\n<script>x</script> [link](http://x) *em* $m$ ```"


def test_hostile_path_stays_inert() -> None:
    md = render(make_report(etc_unmanaged(HOSTILE)), "markdown")
    prose = re.sub(r"(`+) .*? \1(?!`)", "<code span>", "\n".join(outside_code(md)))
    assert "\n## Injected heading" not in prose
    assert "<script>" not in prose
    assert "```'\n" not in prose
    assert "\\`b\\|c\\\\x0a\\#\\# Injected heading\\\\x0a\\<script\\>" in md
    # the table row of the category keeps its three columns
    rows = [line for line in md.split("\n") if line.startswith("| etc |")]
    assert rows == ["| etc | drift | 1 |"]


def test_code_blocks_use_a_fence_longer_than_any_backtick_run_inside() -> None:
    md = render(make_report(etc_unmanaged("/etc/````x")), "markdown")
    block = section(md, "## Medium findings (1)")
    assert "`````sh\nrm -- '/etc/````x'\n`````" in block


OWN_MARKUP = re.compile(r"^(#{1,3} |\\| |\\|---|- |   - |\\d+\\. |\\*\\*|To |No |Generated |$)")


def outside_code(md: str) -> list[str]:
    """The lines outside fenced code blocks; fails when a fence is left open."""
    out: list[str] = []
    fence: str | None = None
    for line in md.split("\n"):
        if fence is None:
            m = re.match(r"^(`{3,})(nix|sh)$", line)
            if m:
                fence = m.group(1)
            else:
                out.append(line)
        elif line == fence:
            fence = None
    assert fence is None, "unclosed code block"
    return out


def unescaped_pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", row))


@given(st.text(), st.text())
def test_arbitrary_text_never_breaks_lines_tables_or_fences(path: str, status: str) -> None:
    report = make_report(etc_unmanaged(path, message=path), categories={Category.ETC: status})
    md = render(report, "markdown")
    md.encode("utf-8")  # valid UTF-8 whatever the bytes
    lines = md.split("\n")
    # every table row has exactly its columns
    for line in lines:
        if line.startswith("| etc |"):
            assert unescaped_pipes(line) == 4, line
    for line in outside_code(md):
        assert OWN_MARKUP.match(line), line


def test_list_markers_at_the_start_of_host_text_are_escaped() -> None:
    assert markdown.md_text("- x") == "\\- x"
    assert markdown.md_text("1. x") == "1\\. x"
    assert markdown.md_text("a - b") == "a - b"
