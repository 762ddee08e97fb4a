"""The VM tier: a Debian guest with real systemd boots under qemu and the nixdrift service, installed
from the unit the NixOS module generates, detects every step of vm-tests/scenario.py.

Runs by default where it can (qemu-system-x86_64, debootstrap, root); the first run builds the
guest image (about 3 minutes, cached in /var/cache/nixdrift-vm), every run boots it (a few minutes
under TCG). The NixOS VM test (vm-tests/nixos-test.nix) cannot run without nixpkgs: it is parsed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
VM_TESTS = TOP / "vm-tests"


def missing() -> str | None:
    tools = [t for t in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "nix-instantiate") if not shutil.which(t)]
    if tools:
        return f"the VM harness needs {', '.join(tools)} on PATH"
    if os.geteuid() != 0:
        return "the VM harness needs root (debootstrap, mkfs.ext4 -d of a root-owned tree)"
    return None


@pytest.mark.vm
@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_every_scenario_step_reaches_journald_and_the_report() -> None:
    proc = subprocess.run(
        [sys.executable, str(VM_TESTS / "harness.py")],
        capture_output=True, text=True, timeout=1500, check=False, cwd=TOP,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output[-20000:]
    assert "scenario: the report lists all 10 findings" in output  # 9 alerts and the auto-remediation
    assert "reverted by autoRemediate: restored within" in output


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix is not installed")
def test_nixos_vm_test_parses() -> None:
    for name in ("nixos-test.nix", "flake/flake.nix", "flake/nixos.nix", "flake/vmhost.nix"):
        proc = subprocess.run(
            ["nix-instantiate", "--parse", str(VM_TESTS / name)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
