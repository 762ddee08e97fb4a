"""`nixdrift check` answered from the answer a real daemon published prints, byte for byte, what
the full command line prints from the daemon's stored report, loads neither argparse nor YAML nor
SQLite nor the models, and gives way to the full command line whenever the question differs, the
answer no longer holds, or `nixdrift accept` changed what it says.

A real `nixdrift daemon` scans a fixture host (drift planted, one category unavailable) and is
stopped; each check runs on the "live host", which is that fixture's /etc and /run bound over the
machine's in a private mount and network namespace (the machine's own /etc and /run are untouched).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from hostscan import as_live_host
from nixdrift import answer
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.service.history import stored_report

pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (mount namespaces)"
    ),
]

AGE = re.compile(r"\(age \d+ s;")
# the CLI, then the modules it loaded, into the file named by $QUICK_PROBE (stdout and stderr untouched)
PROBE = """
import os, sys
from nixdrift import cli
code = cli.main(sys.argv[1:])
with open(os.environ["QUICK_PROBE"], "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""
# the same CLI with the quick path switched off: what `check` printed before it existed
FULL = PROBE.replace("from nixdrift import cli", "from nixdrift import cli, quick\nquick.main = lambda argv: None")


@dataclass(frozen=True)
class Setup:
    built: BuiltHost
    state: Path
    cache: Path
    work: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    base = tmp_path_factory.mktemp("quick")
    built = demo_host(base / "demo").build()
    built.add_etc_file("planted.conf", "planted before the daemon's scan\n")
    (built.root / ".nixdrift" / "units.json").unlink()  # services cannot be scanned: unavailable
    state = base / "state"
    env = {**os.environ, "NIXDRIFT_JOURNAL_SOCKET": "/nonexistent", "NIXDRIFT_QUIET": "1"}
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, "-m", "nixdrift", "daemon", "--flake", str(built.flake), "--host", built.name]
    argv += ["--root", str(built.root), "--state-dir", str(state)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while answer.read(answer.daemon_dir(state)) is None or stored_report(state, 3600) is None:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the daemon published no answer"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    return Setup(built, state, base / "cache", base)


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: bytes
    modules: frozenset[str]

    @property
    def quick(self) -> bool:
        """Answered before argparse was loaded."""
        return "nixdrift.quick" in self.modules and "argparse" not in self.modules

    def same_as(self) -> tuple[int, bytes, bytes]:
        """What a person sees, the header's age (seconds apart between two runs) aside."""
        return (
            self.code,
            AGE.sub("(age N s;", self.stdout.decode()).encode(),
            AGE.sub("(age N s;", self.stderr.decode()).encode(),
        )


def live_check(s: Setup, *extra: str, full: bool = False, env: dict[str, str] | None = None) -> Run:
    """`nixdrift check` on the live root, which is the fixture host in a namespace of its own."""
    root = s.built.root
    argv = [sys.executable, "-c", FULL if full else PROBE, "check", "--flake", str(s.built.flake)]
    argv += ["--host", s.built.name, "--state-dir", str(s.state), "--cache-dir", str(s.cache), *extra]
    probe = s.work / "probe.txt"
    probe.unlink(missing_ok=True)
    proc = subprocess.run(
        as_live_host(root, argv),
        capture_output=True,
        timeout=600,
        env={**os.environ, "NIXDRIFT_QUIET": "1", "QUICK_PROBE": str(probe), **(env or {})},
    )
    assert probe.exists(), proc.stderr.decode()[-3000:]
    return Run(proc.returncode, proc.stdout, proc.stderr, frozenset(probe.read_text().split()))


def test_the_daemon_s_report_has_drift_and_a_category_it_could_not_scan(setup: Setup) -> None:
    """What the comparisons below are made on: a report with findings and an unavailable category."""
    run = live_check(setup, "--format", "json")
    assert run.quick, sorted(run.modules)
    report = json.loads(run.stdout)
    assert "etc/planted.conf" in {f["id"] for f in report["findings"]}
    assert any(str(v).startswith("unavailable") for v in report["categories"].values()), report["categories"]
    assert run.code == 1


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
@pytest.mark.parametrize("color", ["never", "always"])
def test_the_quick_answer_is_byte_for_byte_the_full_command_s(setup: Setup, fmt: str, color: str) -> None:
    fast = live_check(setup, "--format", fmt, "--color", color)
    slow = live_check(setup, "--format", fmt, "--color", color, full=True)
    assert fast.quick, sorted(fast.modules)
    assert not slow.quick and "nixdrift.service.history" in slow.modules  # the stored report, from SQLite
    assert b"from the daemon's scan at" in (fast.stdout if fmt == "text" else fast.stderr)
    assert fast.same_as() == slow.same_as()


def test_colour_auto_follows_no_color_on_both_paths(setup: Setup) -> None:
    """On a pipe `auto` is plain; the rule is the terminal module's on both paths."""
    fast = live_check(setup, env={"NO_COLOR": "1"})
    slow = live_check(setup, full=True, env={"NO_COLOR": "1"})
    assert fast.quick
    assert b"\x1b[" not in fast.stdout
    assert fast.same_as() == slow.same_as()


def test_the_quick_path_imports_only_quick_and_answer(setup: Setup) -> None:
    """`python -X importtime`: every module the answered check imported, by name."""
    root = setup.built.root
    argv = [sys.executable, "-X", "importtime", "-m", "nixdrift", "check", "--flake", str(setup.built.flake)]
    argv += ["--host", setup.built.name, "--state-dir", str(setup.state), "--format", "json"]
    proc = subprocess.run(as_live_host(root, argv), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "from the daemon's scan at" in proc.stderr  # answered
    ours = {m for m in imported if m.split(".")[0] == "nixdrift"}
    assert ours == {
        "nixdrift",
        "nixdrift.cli",
        "nixdrift.quick",
        "nixdrift.answer",
        "nixdrift.terminal",
    }
    assert not imported & {"argparse", "yaml", "sqlite3", "_sqlite3", "typing", "pathlib", "datetime", "dataclasses"}


def test_another_question_or_a_stale_answer_is_left_to_the_full_command(setup: Setup, tmp_path: Path) -> None:
    conf = tmp_path / "config.yaml"
    conf.write_text("alertThreshold: medium\n")
    for extra in (
        ("--fresh",),
        ("--threshold", "critical"),
        ("--config", str(conf)),  # the daemon read no configuration file
        ("--max-age", "0"),
    ):
        run = live_check(setup, "--format", "json", *extra)
        assert not run.quick, extra
        assert run.code in (0, 1, 2) and b"Traceback" not in run.stderr, run.stderr.decode()[-2000:]
    stale = live_check(setup, "--format", "json", "--max-age", "0.001")
    assert not stale.quick
    assert b"from the daemon's scan at" not in stale.stderr  # the full command scanned, as it would have


def test_another_machine_id_is_left_to_the_full_command(setup: Setup) -> None:
    directory = answer.daemon_dir(setup.state)
    meta_file = directory / answer.META
    kept = meta_file.read_bytes()
    meta = json.loads(kept)
    meta["question"]["machine_id"] = "0" * 32
    meta_file.write_text(json.dumps(meta))
    try:
        run = live_check(setup, "--format", "json")
        assert not run.quick
        assert b"from the daemon's scan at" in run.stderr  # the stored report: the full command's own rule
    finally:
        meta_file.write_bytes(kept)
    assert live_check(setup, "--format", "json").quick


def test_publishing_never_fails_the_daemon_and_a_storm_publishes_none(setup: Setup, tmp_path: Path) -> None:
    from nixdrift import config
    from nixdrift.pipeline import ScanOptions
    from nixdrift.rootfs import Root
    from nixdrift.service import answering
    from nixdrift.service.history import Store

    state = tmp_path / "state"
    shutil.copytree(setup.state, state, ignore=shutil.ignore_patterns("*.lock"))
    opts = ScanOptions(str(setup.built.flake), setup.built.name, Root.of(setup.built.root), None)
    store = Store.open(state, repair=False)
    directory = answer.daemon_dir(state)
    try:
        captured = json.loads(store.meta("captured_at") or "{}")
        cfg = config.Config()
        now = {"background": False}
        assert answer.read(directory) is not None
        assert not answering.publish(state, store, cfg, opts, captured, findings=answering.MAX_FINDINGS + 1, **now)
        assert answer.read(directory) is None  # the old answer is gone too
        assert answering.publish(state, store, cfg, opts, captured, findings=3, **now)
        published = answer.read(directory)
        assert published is not None
        files = sorted(p.name for p in directory.iterdir())

        # an answer rendered while a newer report was stored is dropped, and leaves nothing behind
        text = store.meta("report") or ""
        generation = answering._generation[directory] - 1
        stale = answering.Job(directory, generation, text, {}, cfg, opts, time.time(), frozenset(captured), None)
        assert not answering.render(stale)
        assert answer.read(directory) == published
        assert sorted(p.name for p in directory.iterdir()) == files

        # on the answering thread, as the daemon publishes
        assert answering.publish(state, store, cfg, opts, captured, findings=3)
        assert answering._answerer.idle(60)
        again = answer.read(directory)
        assert again is not None and again["token"] != published["token"]

        shutil.rmtree(directory)
        directory.write_text("a file where the answer's directory goes")
        assert not answering.publish(state, store, cfg, opts, captured, findings=3, **now)  # logged, not raised
    finally:
        store.close()


def test_the_answering_thread_renders_the_newest_job_only() -> None:
    from nixdrift.service.answering import Answerer

    started, release, done = threading.Event(), threading.Event(), []

    def work(job: Any) -> bool:
        done.append(job)
        if job == 1:
            started.set()
            release.wait(30)
        return True

    answerer = Answerer(work)
    answerer.submit(1)
    assert started.wait(30)
    answerer.submit(2)  # replaced before it ran
    answerer.submit(3)
    release.set()
    assert answerer.idle(30)
    assert done == [1, 3]


def accept(state: Path, fid: str) -> None:
    argv = [sys.executable, "-m", "nixdrift", "accept", fid, "--reason", "test", "--state-dir", str(state)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_an_answer_rendered_across_an_accept_is_never_printed(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon read the accepted set, then `accept` committed, then the daemon's render published:
    that answer marks the drift unaccepted, so the check reads the history instead."""
    from nixdrift import config
    from nixdrift.pipeline import ScanOptions
    from nixdrift.rootfs import Root
    from nixdrift.service import answering
    from nixdrift.service.history import Store

    state = tmp_path / "state"
    shutil.copytree(setup.state, state, ignore=shutil.ignore_patterns("*.lock"))
    cfg = config.Config()  # as the daemon ran: no configuration file
    opts = ScanOptions(str(setup.built.flake), setup.built.name, Root.of(setup.built.root), None, cfg.policy())
    jobs: list[answering.Job] = []
    monkeypatch.setattr(answering._answerer, "submit", jobs.append)
    store = Store.open(state, repair=False)
    try:
        captured = json.loads(store.meta("captured_at") or "{}")
        assert answering.publish(state, store, cfg, opts, captured, findings=3)
    finally:
        store.close()
    accept(state, "etc/planted.conf")
    assert answering.render(jobs[0])  # the render that was under way when the accept committed
    assert answer.read(answer.daemon_dir(state)) is not None
    run = live_check(replace(setup, state=state), "--format", "json")
    assert not run.quick
    assert {f["id"]: f["accepted"] for f in json.loads(run.stdout)["findings"]}["etc/planted.conf"] is True
    # the same answer published again after the accept (the stamp read then) is printed
    store = Store.open(state, repair=False)
    try:
        assert answering.publish(state, store, cfg, opts, captured, findings=3, background=False)
    finally:
        store.close()
    again = live_check(replace(setup, state=state), "--format", "json")
    assert again.quick
    assert again.same_as() == run.same_as()


def test_accept_discards_the_daemon_s_answer(setup: Setup) -> None:
    """Last in this module: it changes the history. The accepted drift shows accepted at once."""
    before = live_check(setup, "--format", "json")
    assert before.quick
    assert {f["id"]: f["accepted"] for f in json.loads(before.stdout)["findings"]}["etc/planted.conf"] is False
    accept = subprocess.run(
        [
            sys.executable,
            "-m",
            "nixdrift",
            "accept",
            "etc/planted.conf",
            "--reason",
            "test",
            "--state-dir",
            setup.state,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert accept.returncode == 0, accept.stderr
    assert answer.read(answer.daemon_dir(setup.state)) is None
    after = live_check(setup, "--format", "json")
    assert not after.quick
    assert b"from the daemon's scan at" in after.stderr
    assert {f["id"]: f["accepted"] for f in json.loads(after.stdout)["findings"]}["etc/planted.conf"] is True
