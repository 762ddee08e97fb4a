"""`just check-drift`, the common case, runs nixdrift check against the configured flake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixdrift.demo.planters import BuiltHost

pytestmark = pytest.mark.nix

TOP = Path(__file__).resolve().parents[2]
JUST = shutil.which("just", path=str(Path(sys.executable).parent)) or shutil.which("just")


def just(built: BuiltHost, *args: str) -> subprocess.CompletedProcess[str]:
    assert JUST is not None
    env = {**os.environ, "NIXDRIFT_FLAKE": str(built.flake), "NIXDRIFT_HOST": built.name, "NIXDRIFT_QUIET": "1"}
    root = ("--root", str(built.root), "--cache-dir", str(built.tree.base / "cache"))
    return subprocess.run(
        [JUST, "--justfile", str(TOP / "justfile"), "--working-directory", str(TOP), *args, *root, "--format", "json"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.skipif(JUST is None, reason="just is not installed (pip install rust-just)")
def test_check_drift_on_a_clean_host_then_on_drift(demo_built: BuiltHost) -> None:
    clean = just(demo_built, "check-drift")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["host"] == demo_built.name
    demo_built.add_group_member("wheel", "bob")
    drifted = just(demo_built, "check-drift")
    assert drifted.returncode == 1, drifted.stderr
    ids = {f["id"] for f in json.loads(drifted.stdout)["findings"]}
    assert "users/group/wheel/member/bob" in ids
    # one line that says what exit 1 means, not just's "error: Recipe `check-drift` failed ..."
    assert drifted.stderr.strip().splitlines()[-1] == "nixdrift: drift found (exit 1)"
    assert "failed" not in drifted.stderr.lower()


@pytest.mark.skipif(JUST is None, reason="just is not installed (pip install rust-just)")
def test_check_drift_on_an_error_says_so_and_keeps_exit_2(demo_built: BuiltHost) -> None:
    env = {**os.environ, "NIXDRIFT_FLAKE": str(demo_built.flake), "NIXDRIFT_HOST": "nosuchhost"}
    proc = subprocess.run(
        [JUST, "--justfile", str(TOP / "justfile"), "--working-directory", str(TOP),
         "check-drift", "--root", str(demo_built.root)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "nosuchhost" in proc.stderr  # nixdrift's own error line
    assert proc.stderr.strip().splitlines()[-1] == "nixdrift: could not check (exit 2, see above)"


@pytest.mark.skipif(JUST is None, reason="just is not installed (pip install rust-just)")
def test_just_alone_lists_the_recipes_when_just_is_not_on_path(tmp_path: Path) -> None:
    """bootstrap installs just into .venv/bin, which is not on PATH: the default recipe must not
    call a bare `just`."""
    assert JUST is not None
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if shutil.which("just", path=path):
        pytest.skip("just is installed system-wide: a bare `just` would work anyway")
    proc = subprocess.run(
        [JUST, "--justfile", str(TOP / "justfile"), "--working-directory", str(TOP)],
        capture_output=True, text=True, env={**os.environ, "PATH": path}, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recipes = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert {"check-drift", "drift-report", "demo", "test", "vm-test"} <= recipes
