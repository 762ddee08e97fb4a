"""`nixdrift check --root DIR` answered from the previous check's answer while nothing it read has
changed (`nixdrift.scanindex` judges that): the same report, a header saying where it came from,
and a process that imported only quick, answer, terminal and scanindex of nixdrift."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixdrift import answer, quick
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host

pytestmark = pytest.mark.nix

HEADER = "nixdrift: from the previous check at {}: nothing it read has changed since (--fresh to scan now)"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltHost, Path]:
    base = tmp_path_factory.mktemp("quick-inputs")
    built = demo_host(base / "demo").build()
    return built, base / "cache"


def check(built: BuiltHost, cache: Path, *extra: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, *python, "-m", "nixdrift", "check", "--flake", str(built.flake), "--host", built.name]
    argv += ["--root", str(built.root), "--cache-dir", str(cache), "--format", "json", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def test_an_unchanged_root_is_answered_by_the_previous_check(host: tuple[BuiltHost, Path]) -> None:
    built, cache = host
    check(built, cache)  # the evaluation cache (a scan that ran nix is not indexed)
    time.sleep(2.2)  # everything older than the racy window: the next scan is indexable
    scanned = check(built, cache)
    directory = answer.check_dir(cache, str(built.root), str(built.flake), built.name)
    meta = answer.read(directory)
    assert meta is not None and meta["validity"]["kind"] == "inputs", scanned.stderr[-2000:]

    answered = check(built, cache, python=("-X", "importtime"))
    assert answered.returncode == scanned.returncode
    assert answered.stdout == scanned.stdout  # the previous check's report, as it printed it
    lines = [line for line in answered.stderr.splitlines() if not line.startswith("import time:")]
    assert lines[0] == HEADER.format(meta["generated_at"])
    assert quick.header(meta) == lines[0].removeprefix("nixdrift: ")
    assert json.loads(answered.stdout)["generated_at"] == meta["generated_at"]
    imported = {line.rsplit("|", 1)[1].strip() for line in answered.stderr.splitlines() if "import time:" in line}
    ours = {m for m in imported if m.split(".")[0] == "nixdrift"}
    assert ours == {f"nixdrift{m}" for m in ("", ".cli", ".quick", ".answer", ".terminal", ".scanindex")}
    assert not imported & {"argparse", "yaml", "sqlite3", "_sqlite3"}

    fresh = check(built, cache, "--fresh")
    assert not fresh.stderr.startswith("nixdrift: from the previous check")
