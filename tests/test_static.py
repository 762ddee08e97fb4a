"""Static checks as tests, so the README's one test command covers them: ruff, mypy, nix parse."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=TOP, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    proc = _run([str(BIN / "ruff"), "check", "daemon", "tests", "benchmarks", "vm-tests"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    proc = _run([str(BIN / "ruff"), "format", "--check", "daemon", "tests", "benchmarks", "vm-tests"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean() -> None:
    proc = _run([str(BIN / "mypy")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix is not installed")
def test_every_nix_file_parses() -> None:
    files = [p for p in TOP.rglob("*.nix") if ".venv" not in p.parts]
    assert files, "the project ships Nix files"
    for path in files:
        proc = _run(["nix-instantiate", "--parse", str(path)])
        assert proc.returncode == 0, f"{path}: {proc.stderr}"


def test_no_test_imports_from_conftest() -> None:
    # with importlib import mode every directory's conftest is a module named `conftest` and the
    # first one loaded wins: a full run then fails to import what a single file's run finds
    offenders = [
        str(path.relative_to(TOP))
        for path in (TOP / "tests").rglob("*.py")
        if any(line.startswith(("from conftest import", "import conftest")) for line in path.read_text().splitlines())
    ]
    assert offenders == [], f"import shared test helpers from tests/hostscan.py instead: {offenders}"
