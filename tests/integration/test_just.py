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
