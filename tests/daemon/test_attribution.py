"""Attribution: who made a change, from the audit log or the journal, and never what they typed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from daemon_findings import finding

from nixdrift.models import Category
from nixdrift.rootfs import Root
from nixdrift.service import attribution

SECRET = "hunter2-do-not-log"


def journal(*entries: dict[str, Any]) -> Any:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert argv[:3] == ["journalctl", "-o", "json"]
        return subprocess.CompletedProcess(argv, 0, "".join(json.dumps(e) + "\n" for e in entries), "")

    return run


@pytest.fixture(autouse=True)
def no_audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attribution, "AUDIT_LOG", tmp_path / "absent-audit.log")
    monkeypatch.setattr(attribution.process, "which", lambda tool: f"/usr/bin/{tool}")


def test_sudo_names_the_user_and_program_but_never_the_arguments() -> None:
    sudo = {
        "_COMM": "sudo",
        "_UID": "0",
        "MESSAGE": f"alice : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/tee /etc/motd {SECRET}",
    }
    who = attribution.attribute(Root(), finding(), 1_700_000_000.0, run=journal(sudo))
    assert who == "user alice via sudo: /usr/bin/tee [journal]"
    assert SECRET not in who


def test_user_tools_attribute_account_changes_without_their_message() -> None:
    usermod = {"_COMM": "usermod", "_UID": "0", "_PID": "4242", "MESSAGE": f"add 'mallory' to group 'wheel' {SECRET}"}
    f = finding(id="users/group/wheel/member/mallory", category=Category.USERS, evidence={"path": "/etc/group"})
    who = attribution.attribute(Root(), f, 1_700_000_000.0, run=journal(usermod))
    assert who == "usermod (uid 0, pid 4242) [journal]"


def test_audit_log_names_the_process_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        'type=SYSCALL msg=audit(1700000000.123:77): syscall=257 success=yes auid=1000 uid=0 comm="vim" '
        'exe="/usr/bin/vim"\n'
        'type=PATH msg=audit(1700000000.123:77): item=1 name="/etc/motd" inode=12 nametype=CREATE\n'
    )
    monkeypatch.setattr(attribution, "AUDIT_LOG", log)
    who = attribution.attribute(Root(), finding(), 1_700_000_000.0, run=journal())
    assert who == "auid 1000, uid 0, comm vim, exe /usr/bin/vim [audit]"


def test_nothing_known_says_why_and_a_snapshot_is_never_attributed(tmp_path: Path) -> None:
    who = attribution.attribute(Root(), finding(), 1_700_000_000.0, run=journal())
    assert who.startswith("unavailable: ") and "no audit log" in who and "no journal entry" in who
    assert attribution.attribute(Root.of(tmp_path), finding(), 0.0).startswith("unavailable: ")
