"""The terminal report and the JSON report, as `nixdrift check` prints them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import dns_changed, make_report, port_opened
from nixdrift.compare.common import finding, sh
from nixdrift.models import Category, Kind
from nixdrift.report import render


def etc_changed(path: str = "/etc/hosts", message: str | None = None):
    return finding(
        rule_name="etc-changed",
        id=f"etc/{path}/content",
        category=Category.ETC,
        subject=path,
        kind=Kind.CHANGED,
        expected="sha256:aaaa",
        actual="sha256:bbbb",
        message=message or f"{path} was edited by hand",
        command=sh("nixos-rebuild", "switch"),
        evidence={"path": path},
    )


def test_header_names_host_flake_revision_dirty_and_generations() -> None:
    text = render(make_report(dirty=True), "text")
    assert "web1" in text
    assert "git+file:///etc/nixos @ abc123 (dirty)" in text
    assert "declared: /nix/store/aaa-nixos-system" in text
    assert "booted:   -" in text


def test_findings_are_grouped_most_severe_first_with_expected_actual_and_fix() -> None:
    text = render(make_report(dns_changed(), etc_changed(), port_opened()), "text")
    crit, med, low = text.index("CRITICAL (1)"), text.index("MEDIUM (1)"), text.index("LOW (1)")
    assert crit < med < low
    block = text[crit:med]
    assert "firewall/tcp/8080/open" in block
    assert "expected: closed -> actual: open" in block
    assert "fix:  nft delete element inet nixos-fw temp-ports '{ tcp . 8080 }'  [safe]" in block
    assert "[review: reverting by hand needs a decision]" in text[med:low]


def test_category_status_lines_show_ok_drift_and_unavailable_reason() -> None:
    cats = {Category.FIREWALL: "drift", Category.USERS: "ok", Category.EXPOSURE: "unavailable: psutil denied"}
    text = render(make_report(port_opened(), categories=cats), "text")
    assert "  firewall  drift" in text
    assert "  users     ok" in text
    assert "  exposure  unavailable: psutil denied" in text


def test_summary_line_counts_active_findings_by_severity() -> None:
    accepted = etc_changed("/etc/motd").with_(accepted=True)
    text = render(make_report(port_opened(1), port_opened(2), etc_changed(), accepted, dns_changed()), "text")
    last = text.rstrip("\n").split("\n")[-1]
    assert last == "4 findings: 2 critical, 1 medium, 1 low (1 accepted); 4 at or above threshold low"


def test_no_drift_says_zero_findings() -> None:
    text = render(make_report(categories={Category.ETC: "ok"}), "text")
    assert text.rstrip("\n").split("\n")[-1] == "0 findings; 0 at or above threshold low"
    assert "CRITICAL" not in text


def test_accepted_findings_are_listed_apart_and_not_counted() -> None:
    accepted = etc_changed("/etc/motd").with_(accepted=True)
    text = render(make_report(accepted), "text")
    assert "MEDIUM (" not in text
    section = text[text.index("accepted (1):") :]
    assert "etc//etc/motd/content: /etc/motd was edited by hand" in section


def test_problems_are_listed_at_the_end() -> None:
    text = render(make_report(problems=["users: /etc/passwd:3: not 7 fields"]), "text")
    assert text.index("problems (1):") > text.index("web1")
    assert "  - users: /etc/passwd:3: not 7 fields" in text


def test_colour_only_when_asked_and_by_severity() -> None:
    report = make_report(port_opened(), dns_changed())
    plain = render(report, "text", color=False)
    assert "\x1b" not in plain
    coloured = render(report, "text", color=True)
    assert "\x1b[1;31mCRITICAL (1)\x1b[0m" in coloured
    assert "\x1b[36mLOW (1)\x1b[0m" in coloured
    assert coloured.replace("\x1b[1;31m", "").replace("\x1b[36m", "").replace("\x1b[0m", "") == plain


def test_escape_sequences_in_host_data_cannot_reach_the_terminal() -> None:
    evil = "/etc/x\x1b[2J\x1b]0;owned\x07\nFAKE LINE"
    text = render(make_report(etc_changed(evil)), "text")
    assert "\x1b" not in text and "\x07" not in text
    assert "\nFAKE LINE" not in text
    assert "/etc/x\\x1b[2J" in text


def test_c1_controls_and_bidi_overrides_are_shown_escaped() -> None:
    text = render(make_report(etc_changed("/etc/a\x9b31m\u202eb")), "text")
    assert "\x9b" not in text and "\u202e" not in text
    assert "/etc/a\\u009b31m\\u202eb" in text


@given(st.text(), st.text())
def test_plain_text_never_holds_control_characters(path: str, message: str) -> None:
    text = render(make_report(etc_changed(path, message=message or None)), "text")
    assert all(ch.isprintable() for ch in text.replace("\n", ""))


def test_json_is_the_schema_with_sorted_keys_and_deterministic() -> None:
    report = make_report(dns_changed(), port_opened(), etc_changed())
    out = render(report, "json")
    assert out.endswith("}\n")
    data = json.loads(out)
    assert data["schema_version"] == 1
    assert [f["id"] for f in data["findings"]] == [
        "firewall/tcp/8080/open",
        "etc//etc/hosts/content",
        "network/dns/nameservers",
    ]
    assert data["summary"] == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 0}
    assert out == json.dumps(data, indent=2, sort_keys=True) + "\n"
    reordered = make_report(etc_changed(), port_opened(), dns_changed())
    assert render(reordered, "json") == out


def test_json_keeps_undecodable_bytes_as_valid_json() -> None:
    raw = etc_changed().with_(subject="/etc/\udcff")  # findings are made printable; JSON copes regardless
    out = render(make_report(raw), "json")
    out.encode("utf-8")  # no lone surrogate left in the text
    assert json.loads(out)["findings"][0]["subject"] == "/etc/\udcff"
    assert etc_changed("/etc/\udcff").subject == "/etc/\\xff"  # as comparators make them


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(make_report(), "yaml")
