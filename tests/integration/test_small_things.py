"""Small things a user hits: a fast `--help`, commands that load only what they use, colour that
obeys NO_COLOR and TERM=dumb, `just` with no argument, and a quiet-but-informative bootstrap."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from nixdrift import cli
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host

TOP = Path(__file__).resolve().parents[2]

# Modules a parser must never need: third-party clients and nixdrift's scanning stages.
HEAVY = (
    "git",
    "psutil",
    "jeepney",
    "kubernetes",
    "yaml",
    "watchdog",
    "sqlite3",
    "nixdrift.pipeline",
    "nixdrift.models",
    "nixdrift.report",
    "nixdrift.capture",
    "nixdrift.compare",
    "nixdrift.declared",
    "nixdrift.config",
    "nixdrift.service",
    "nixdrift.sinks",
)

_PROBE = """
import json, sys
from nixdrift import cli
argv = json.loads(sys.argv[1])
code = None
try:
    code = cli.main(argv) if argv else cli.parser()
    code = code if isinstance(code, int) else None
except SystemExit as exc:
    code = exc.code
heavy = json.loads(sys.argv[2])
loaded = sorted(h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules))
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def probe(*argv: str, env: dict[str, str] | None = None) -> tuple[object, list[str], str]:
    """Run the CLI in a fresh interpreter; return its exit code, the heavy modules it imported
    and its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(argv)), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {}), "NIXDRIFT_QUIET": "1"},
        check=False,
    )
    last = proc.stderr.strip().splitlines()[-1]
    result = json.loads(last)
    return result["code"], result["loaded"], proc.stdout


def test_building_the_parser_loads_no_collector_or_client() -> None:
    code, loaded, _ = probe()
    assert code is None
    assert loaded == []


def test_help_lists_every_command_without_loading_them() -> None:
    code, loaded, out = probe("--help")
    assert code == 0
    assert loaded == []
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_command_help_loads_nothing_heavy(command: str) -> None:
    code, loaded, out = probe(command, "--help")
    assert code == 0
    assert loaded == []
    assert f"usage: nixdrift {command}" in out


def test_history_loads_its_database_code_but_no_collector(tmp_path: Path) -> None:
    code, loaded, _ = probe("history", "--state-dir", str(tmp_path))
    assert code == 2  # no history there
    assert "nixdrift.pipeline" not in loaded
    assert "nixdrift.capture" not in loaded
    assert "kubernetes" not in loaded
    assert "psutil" not in loaded


def test_the_help_texts_name_the_real_defaults() -> None:
    """Two constants are repeated in the light command modules so that --help imports neither the
    YAML loader nor the Kubernetes client; they must stay what those modules use."""
    from nixdrift import config, fleet
    from nixdrift.commands import common
    from nixdrift.commands import fleet as fleet_command

    assert str(config.DEFAULT_PATH) == common.DEFAULT_CONFIG
    assert fleet_command.FORMATS == fleet.FORMATS


# --- colour: NO_COLOR and TERM=dumb ------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> BuiltHost:
    built = demo_host(tmp_path_factory.mktemp("colour")).build()
    built.add_group_member("wheel", "bob")  # a critical finding: its lines are coloured
    return built


def check_on_a_terminal(built: BuiltHost, *extra: str, **env: str) -> tuple[int, str]:
    """`nixdrift check` with its stdout on a pseudo-terminal (where `--color auto` may colour)."""
    argv = [sys.executable, "-m", "nixdrift", "check", "--flake", str(built.flake), "--host", built.name]
    argv += ["--root", str(built.root), "--cache-dir", str(built.tree.base / "cache"), *extra]
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    master, slave = pty.openpty()
    with subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env={**base, **env}) as proc:
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=600)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.nix
@pytest.mark.parametrize(
    ("env", "extra", "coloured"),
    [
        ({"TERM": "xterm"}, (), True),
        ({"TERM": "xterm", "NO_COLOR": "1"}, (), False),
        ({"TERM": "xterm", "NO_COLOR": "yes please"}, (), False),
        ({"TERM": "xterm", "NO_COLOR": ""}, (), True),  # set but empty: no-color.org says ignore it
        ({"TERM": "dumb"}, (), False),
        ({"TERM": "dumb", "NO_COLOR": "1"}, ("--color", "always"), True),  # the flag is the user's word
        ({"TERM": "xterm"}, ("--color", "never"), False),
    ],
)
def test_color_auto_obeys_no_color_and_a_dumb_terminal(
    drifted: BuiltHost, env: dict[str, str], extra: tuple[str, ...], coloured: bool
) -> None:
    code, out = check_on_a_terminal(drifted, *extra, **env)
    assert code == 1, out
    assert "users/group/wheel/member/bob" in out
    assert ("\x1b[" in out) is coloured, out[:400]


# --- bootstrap: the demo's set-up is small, and every step says what it does --------------------

_STUB = """#!/bin/sh
echo "STUB $(basename "$0") $*" >&2
case "$(basename "$0")" in
  dpkg-query) [ -n "${STUB_INSTALLED:-}" ] && printf 'install ok installed'; exit 0 ;;
  nix) echo "nix (Nix) 2.8.0" ;;
  python*) if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;
esac
"""


def bootstrap(tmp_path: Path, *args: str, installed: bool = False) -> tuple[int, list[str]]:
    """scripts/bootstrap.sh in a copy of the repository, with apt, dpkg, python and nix replaced by
    stubs that log their arguments to the same stderr as the script's own progress lines."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    (repo / "scripts" / "bootstrap.sh").write_text((TOP / "scripts" / "bootstrap.sh").read_text())
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in ("dpkg-query", "apt-get", "nix", "python3-stub"):
        (stubs / name).write_text(_STUB)
        (stubs / name).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "PYTHON": str(stubs / "python3-stub"), "HOME": str(tmp_path)}
    if installed:
        env["STUB_INSTALLED"] = "1"
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap.sh"), *args], capture_output=True, text=True, env=env, timeout=60
    )
    return proc.returncode, proc.stderr.splitlines()


def _index(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(start))


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the script asks sudo")
def test_the_demo_set_up_installs_nix_and_git_only_and_says_so(tmp_path: Path) -> None:
    code, lines = bootstrap(tmp_path, "--demo")
    assert code == 0, lines
    installs = [line for line in lines if line.startswith("STUB apt-get install")]
    assert len(installs) == 1 and installs[0].split()[-2:] == ["nix-bin", "git"], installs
    pips = [line for line in lines if "-m pip install" in line]
    assert len(pips) == 1 and pips[0].endswith(" -e ."), pips
    # each step is announced before it runs
    assert _index(lines, "bootstrap: updating the package lists") < _index(lines, "STUB apt-get update")
    assert _index(lines, "bootstrap: installing nix-bin git (the demo") < _index(lines, "STUB apt-get install")
    assert _index(lines, "bootstrap: creating the virtual environment") < _index(lines, "STUB python3-stub -m venv")
    assert _index(lines, "bootstrap: installing nixdrift into .venv") < _index(lines, "STUB python -m pip")
    assert lines[-1].startswith("bootstrap: ready (demo set-up")


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the script asks sudo")
def test_the_full_set_up_adds_the_test_and_vm_tools(tmp_path: Path) -> None:
    code, lines = bootstrap(tmp_path)
    assert code == 0, lines
    packages = {p for line in lines if line.startswith("STUB apt-get install") for p in line.split()[6:]}
    assert {"nix-bin", "git", "aide", "nftables", "qemu-system-x86", "debootstrap"} <= packages
    assert any(line.endswith("-e .[test]") for line in lines if "-m pip install" in line)
    for announced in ("installing qemu-system-x86", "installing aide", "installing nixdrift and its test tools"):
        assert any(line.startswith(f"bootstrap: {announced}") for line in lines), lines


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the script asks sudo")
def test_a_second_bootstrap_installs_no_package(tmp_path: Path) -> None:
    code, lines = bootstrap(tmp_path, installed=True)
    assert code == 0, lines
    assert not [line for line in lines if line.startswith("STUB apt-get")]
    assert lines[-1].startswith("bootstrap: ready (full set-up")


def test_the_readme_demo_line_sets_up_the_demo_only_and_its_test_line_is_what_ci_runs() -> None:
    block = (TOP / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    demo, tests = (line.split("  #", 1)[0].strip() for line in block.splitlines()[:2])
    assert demo == "bash scripts/bootstrap.sh --demo && .venv/bin/nixdrift demo"
    assert tests == "bash scripts/bootstrap.sh && .venv/bin/pytest -q"
    assert tests in (TOP / ".ci" / "run").read_text().splitlines()


def test_explain_of_a_saved_report_loads_no_collector(tmp_path: Path) -> None:
    report = {
        "schema_version": 1,
        "host": "web1",
        "generated_at": "2024-05-01T10:00:00Z",
        "flake": {"reference": "/etc/nixos", "revision": None, "dirty": False},
        "generations": {"declared": None, "current": None, "booted": None},
        "categories": {},
        "findings": [],
    }
    saved = tmp_path / "drift-report.json"
    saved.write_text(json.dumps(report))
    code, loaded, out = probe("explain", "--dry-run", str(saved))
    assert code == 0
    assert json.loads(out)  # the request it would send
    assert "nixdrift.pipeline" not in loaded and "nixdrift.capture" not in loaded, loaded
