"""The remediation script: dry-run by default, exact argv with --apply, host data never breaks it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixdrift import target
from nixdrift.compare.common import finding, sh
from nixdrift.models import Category, FlakeInfo, Generations, Kind, Report, sort_findings
from nixdrift.report import script, write_all
from nixdrift.report.script import run_line

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")
# The scripts below are made for this machine, so that --apply runs (the guard itself is tested in
# test_remediation_guard.py); a machine with neither machine-id nor NixOS system cannot be told apart.
HERE = target.here()
UNIDENTIFIED = target.refusal(HERE, HERE)


def etc_finding(path: str, *, command: str, safe: bool, message: str | None = None, rule: str = "etc-unmanaged"):
    return finding(
        rule_name=rule,
        id=f"etc/{path}",
        category=Category.ETC,
        subject=path,
        kind=Kind.UNMANAGED,
        expected="absent",
        actual="file",
        message=message if message is not None else f"{path} is not declared",
        nix=f'environment.etc."{path}".text = "...";',
        command=command,
        safe=safe,
        evidence={"path": path},
    )


def report_of(*findings) -> Report:
    return Report(
        host="web1",
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("git+file:///etc/nixos", "abc123"),
        generations=Generations(None, None, None),
        categories={Category.ETC: "drift" if findings else "ok"},
        findings=sort_findings(list(findings)),
        scanned=HERE,
    )


def write_script(tmp_path: Path, report: Report) -> Path:
    path = tmp_path / "remediation-script.sh"
    path.write_bytes(script.encode(script.render(report)))
    path.chmod(0o755)
    return path


def bash(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    assert BASH is not None
    if "--apply" in args and UNIDENTIFIED:
        pytest.skip(f"--apply refuses on this machine: {UNIDENTIFIED}")
    return subprocess.run([BASH, *map(str, args)], capture_output=True, cwd=cwd, timeout=60, check=False)


def syntax_ok(path: Path) -> None:
    result = bash("-n", path)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


# Names an attacker controls: spaces, quotes, command substitution, newlines, an undecodable byte.
ODD_NAMES = [
    "plain",
    "with space",
    'it\'s "quoted"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "new\nline; touch PWNED",
    "bad-\udcff-byte",
    "-rf",
    "tab\there #not a comment",
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_dry_run_prints_but_touches_nothing_and_apply_removes_exactly_that_file(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    victim = os.fsencode(work) + b"/" + os.fsencode(name)
    bystander = work / "bystander"
    bystander.write_text("keep me")
    with open(victim, "wb") as fh:
        fh.write(b"drift")
    target = os.fsdecode(victim)
    path = write_script(tmp_path, report_of(etc_finding(target, command=sh("rm", "--", target), safe=True)))
    syntax_ok(path)

    dry = bash(path, cwd=work)
    assert dry.returncode == 0, dry.stderr
    assert b"would run: rm --" in dry.stdout
    assert b"dry run: 1 command(s) shown" in dry.stdout
    assert os.path.exists(victim)

    applied = bash(path, "--apply", cwd=work)
    assert applied.returncode == 0, applied.stderr
    assert not os.path.lexists(victim)
    assert sorted(os.listdir(work)) == ["bystander"]  # nothing else created (no PWNED) or removed
    assert bystander.read_text() == "keep me"


def test_unsafe_fix_is_only_a_comment_with_the_reason(tmp_path: Path) -> None:
    victim = tmp_path / "keep"
    victim.write_text("x")
    f = etc_finding(str(victim), command=sh("rm", "--", str(victim)), safe=False)
    path = write_script(tmp_path, report_of(f))
    text = path.read_text()
    assert "# not run: reverting by hand needs a decision" in text
    assert f"#   run rm -- {victim}" in text
    result = bash(path, "--apply")
    assert result.returncode == 0, result.stderr
    assert victim.exists()
    assert b"applied 0 command(s)" in result.stdout


def test_compound_command_keeps_its_meaning_through_bash_c(tmp_path: Path) -> None:
    out = tmp_path / "out file"
    command = f"printf '%s\\n' one > {sh(str(out))} && printf '%s\\n' two >> {sh(str(out))}"
    path = write_script(tmp_path, report_of(etc_finding("/etc/x", command=command, safe=True)))
    assert "run bash -c " in path.read_text()
    assert bash(path).returncode == 0 and not out.exists()
    assert bash(path, "--apply").returncode == 0
    assert out.read_text() == "one\ntwo\n"


def test_apply_stops_at_the_first_failing_command(tmp_path: Path) -> None:
    later = tmp_path / "later"
    later.write_text("x")
    failing = etc_finding("/etc/a", command=sh("false"), safe=True, rule="etc-sensitive")  # high: runs first
    removing = etc_finding(str(later), command=sh("rm", "--", str(later)), safe=True)
    result = bash(write_script(tmp_path, report_of(failing, removing)), "--apply")
    assert result.returncode != 0
    assert later.exists()


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    path = write_script(tmp_path, report_of(etc_finding("/etc/a", command=sh("true"), safe=True)))
    result = bash(path, "--aply")
    assert result.returncode == 2
    assert b"usage" in result.stderr


def test_accepted_findings_are_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "accepted"
    victim.write_text("x")
    f = etc_finding(str(victim), command=sh("rm", "--", str(victim)), safe=True).with_(accepted=True)
    path = write_script(tmp_path, report_of(f))
    assert bash(path, "--apply").returncode == 0
    assert victim.exists()
    assert "1 accepted finding(s) left alone" in path.read_text()


def test_a_command_with_a_nul_byte_is_never_run(tmp_path: Path) -> None:
    f = etc_finding("/etc/a", command="rm -- '/etc/a\x00b'", safe=True)
    text = script.render(report_of(f))
    assert "\nrun " not in text
    assert "cannot be written into a script safely" in text


def test_write_all_makes_the_script_executable(tmp_path: Path) -> None:
    paths = write_all(report_of(etc_finding("/etc/a", command=sh("true"), safe=True)), tmp_path / "out")
    script_path = tmp_path / "out" / "remediation-script.sh"
    assert script_path in paths
    assert os.access(script_path, os.X_OK)
    assert script_path.read_bytes().startswith(b"#!/usr/bin/env bash\n")
    result = subprocess.run([str(script_path)], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0 and b"would run: true" in result.stdout


# Text as comparators see it: anything, including undecodable bytes kept as surrogates.
host_text = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
)


ECHO_ARGV = "import os, sys; sys.stdout.buffer.write(os.fsencode(sys.argv[1]))"


def assert_structure(text: str, command: str) -> None:
    """Outside the one run line (whose quoted argument may span lines), every line is the fixed
    frame, blank, a comment, or that run line: host text never starts a line of its own."""
    line = script.run_line(command)
    body = text.replace(line, "run <command>") if line else text
    frame = {"#!/usr/bin/env bash"} | set(script.PRELUDE.split("\n")) | set(script.FOOTER.split("\n"))
    frame |= set(script.target_lines(HERE))
    for row in body.split("\n"):
        assert row in frame or row == "" or row.startswith("# ") or row == "run <command>", f"stray line {row!r}"
        if row.startswith("#"):
            assert all(ch.isprintable() for ch in row), row


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=host_text, message=host_text)
def test_arbitrary_host_text_keeps_the_script_valid_and_the_argv_exact(tmp_path: Path, path: str, message: str) -> None:
    command = sh(sys.executable, "-c", ECHO_ARGV, path)
    text = script.render(report_of(etc_finding(path, command=command, safe=True, message=message)))
    assert_structure(text, command)
    out = tmp_path / "s.sh"
    out.write_bytes(script.encode(text))
    syntax_ok(out)
    result = bash(out, "--apply")
    assert result.returncode == 0, result.stderr
    if "\x00" in path:  # no argv can hold a NUL: left for review, never run
        assert result.stdout.endswith(b"applied 0 command(s)\n")
    else:
        assert result.stdout.endswith(os.fsencode(path) + b"applied 1 command(s)\n")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=host_text, message=host_text)
def test_arbitrary_host_text_in_an_unsafe_fix_stays_in_comments(tmp_path: Path, path: str, message: str) -> None:
    command = sh("rm", "-rf", "--", path)
    text = script.render(report_of(etc_finding(path, command=command, safe=False, message=message)))
    assert "\nrun " not in text
    for row in text.split("\n"):
        frame = script.PRELUDE.split("\n") + script.FOOTER.split("\n") + script.target_lines(HERE)
        assert row in frame or row.startswith("#") or not row
    out = tmp_path / "s.sh"
    out.write_bytes(script.encode(text))
    syntax_ok(out)


def test_compound_command_of_many_plain_words_is_wrapped_not_matched_forever() -> None:
    # a regression: the quoted-argv pattern backtracked exponentially on long `&&` commands
    words = " ".join(f"word-{i}-x" for i in range(40))
    command = f"iptables {words} && ip6tables {words}"
    assert run_line(command) == f"run bash -c {shlex.quote(command)}"
