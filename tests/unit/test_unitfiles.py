"""Unit files and unit directories: the parser (hypothesis: never raises), the settings summary,
and what a directory scan classifies as unit, mask, enablement link or drop-in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture import unitfiles
from nixdrift.capture.unitfiles import EntryKind, UnitFile, UnitSetting, parse_unit_file, summarize
from nixdrift.live import services as live_services
from nixdrift.rootfs import Root


def test_parse_sections_comments_and_continuations() -> None:
    text = (
        "# leading comment\n"
        "[Unit]\n"
        "Description=SSH daemon\n"
        "; another comment\n"
        "[Service]\n"
        "ExecStart=/bin/sshd \\\n"
        "  -D \\\n"
        "# a comment inside a continuation is skipped\n"
        "  -p 22\n"
        "Environment=A=1 B=2\n"
    )
    settings, problems = parse_unit_file(text, "sshd.service")
    assert problems == ()
    assert settings == (
        UnitSetting("Unit", "Description", "SSH daemon"),
        UnitSetting("Service", "ExecStart", "/bin/sshd  -D  -p 22"),
        UnitSetting("Service", "Environment", "A=1 B=2"),
    )


def test_bad_lines_are_problems_and_the_rest_is_kept() -> None:
    text = "Orphan=1\n[Service\n[Service]\njust words\nType=simple\n"
    settings, problems = parse_unit_file(text, "x.service")
    assert settings == (UnitSetting("Service", "Type", "simple"),)
    assert problems == (
        "x.service:1: setting outside any section",
        "x.service:2: malformed section header",
        "x.service:4: not a Key=Value line",
    )


@given(st.text())
def test_parse_never_raises_on_text(text: str) -> None:
    settings, problems = parse_unit_file(text, "f")
    assert all(p.startswith("f:") for p in problems)
    summarize(settings)


@given(st.binary())
def test_parse_never_raises_on_bytes(data: bytes) -> None:
    settings, _ = parse_unit_file(data.decode("utf-8", errors="surrogateescape"), "f")
    summarize(settings)


def test_summary_applies_resets_in_order() -> None:
    settings, _ = parse_unit_file(
        "[Unit]\nConditionPathExists=/x\n[Service]\nType=oneshot\nExecStart=/a\nExecStart=\nExecStart=/b\n"
        "[Socket]\nListenStream=80\nListenDatagram=53\nListenStream=\nListenStream=443\n"
    )
    assert summarize(settings) == UnitFile("oneshot", False, True, ("/b",), ("ListenStream=443",))
    assert summarize(settings).runs_once


@pytest.mark.parametrize(("value", "runs_once"), [("yes", False), ("true", False), ("no", True), ("0", True)])
def test_remain_after_exit(value: str, runs_once: bool) -> None:
    settings, _ = parse_unit_file(f"[Service]\nType=oneshot\nRemainAfterExit={value}\n")
    assert summarize(settings).runs_once is runs_once


@pytest.mark.parametrize(
    ("unit", "template"),
    [
        ("getty@tty1.service", "getty@.service"),
        ("getty@.service", None),
        ("sshd.service", None),
        ("systemd-fsck@dev-disk-by\\x2dlabel-x.service", "systemd-fsck@.service"),
    ],
)
def test_template_of(unit: str, template: str | None) -> None:
    assert live_services.template_of(unit) == template


def build_dir(tmp: Path) -> Path:
    units = tmp / "run/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "sshd.service.d").mkdir()
    (tmp / "store").mkdir()
    (tmp / "store/real.service").write_text("[Service]\nExecStart=/bin/true\n")
    (units / "linked.service").symlink_to("/store/real.service")
    (units / "own.service").write_text("[Service]\nExecStart=/bin/own\n")
    (units / "masked.service").symlink_to("/dev/null")
    (units / "empty.service").write_text("")
    (units / "alias-to-mask.service").symlink_to("masked.service")
    (units / "multi-user.target.wants/own.service").symlink_to("../own.service")
    (units / "multi-user.target.wants/README").write_text("not a unit")
    (units / "sshd.service.d/50-CPUQuota.conf").write_text("[Service]\nCPUQuota=5%\n")
    (units / "sshd.service.d/notes.txt").write_text("ignored")
    (units / "stray.txt").write_text("ignored")
    return units


def test_scan_classifies_entries(tmp_path: Path) -> None:
    build_dir(tmp_path)
    scanned = unitfiles.scan_unit_dir(Root.of(tmp_path), "/run/systemd/system")
    assert scanned is not None
    kinds = {e.rel: e.kind for e in scanned.entries}
    assert kinds == {
        "alias-to-mask.service": EntryKind.MASK,
        "empty.service": EntryKind.MASK,
        "linked.service": EntryKind.UNIT,
        "masked.service": EntryKind.MASK,
        "own.service": EntryKind.UNIT,
        "multi-user.target.wants/own.service": EntryKind.LINK,
        "sshd.service.d/50-CPUQuota.conf": EntryKind.DROPIN,
    }
    by_rel = scanned.by_rel()
    link = by_rel["multi-user.target.wants/own.service"]
    assert (link.unit, link.parent, link.target) == ("own.service", "multi-user.target", "../own.service")
    dropin = by_rel["sshd.service.d/50-CPUQuota.conf"]
    assert (dropin.unit, dropin.name, dropin.host_path) == (
        "sshd.service",
        "50-CPUQuota.conf",
        "/run/systemd/system/sshd.service.d/50-CPUQuota.conf",
    )
    # A link below the root is followed below the root: its digest is the store file's.
    real = (tmp_path / "store/real.service").read_bytes()
    assert by_rel["linked.service"].digest == hashlib.sha256(real).hexdigest()


def test_scan_of_a_missing_directory_is_none(tmp_path: Path) -> None:
    assert unitfiles.scan_unit_dir(Root.of(tmp_path), "/run/systemd/transient") is None


def test_read_unit_file_applies_dropins_after_the_fragment(tmp_path: Path) -> None:
    build_dir(tmp_path)
    root = Root.of(tmp_path)
    (tmp_path / "run/systemd/system/sshd.service.d/60-exec.conf").write_text("[Service]\nExecStart=\nExecStart=/b\n")
    parsed, problems = unitfiles.read_unit_file(
        root, ["/run/systemd/system/own.service", "/run/systemd/system/sshd.service.d/60-exec.conf"]
    )
    assert parsed == UnitFile(exec_start=("/b",)) and problems == ()
    missing, problems = unitfiles.read_unit_file(root, ["/run/systemd/system/nope.service"])
    assert missing is None and problems[0].startswith("/run/systemd/system/nope.service: cannot read")
