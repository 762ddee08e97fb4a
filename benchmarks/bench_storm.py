"""Storm benchmark (issue 9): files created then deleted under /etc, and latency with many findings.

    .venv/bin/python benchmarks/bench_storm.py [--files 20000,100000] [--active 15000] [--edits 50]

For each storm size: a fresh fixture host (real nix) and daemon; N files created under /etc/storm,
then the directory deleted. Prints whether the daemon crashed, how many files lack exactly one
"new" and one "resolved" history event, stale findings left, the time to settle (every file
recorded, every file resolved), peak RSS, and the alerts the journal got; `inotifywait -r` on a
copy of the same storm is the floor (its events printed, and lost). Then edit-to-alert latency
with `--active` findings already recorded. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "daemon"))

from daemon_harness import Daemon, wait_for
from daemon_host import build_host


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class PeakRSS:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(1)
        return self.peak


def counts(state: Path, kind: str, below: str = "/etc/storm/") -> dict[str, int]:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=60)
    try:
        rows = db.execute(
            "SELECT path, COUNT(*) FROM events WHERE kind = ? AND path LIKE ? GROUP BY path", (kind, f"{below}%")
        ).fetchall()
    finally:
        db.close()
    return {str(p): int(n) for p, n in rows}


def stale(state: Path) -> int:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=60)
    try:
        q = "SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL AND id LIKE 'etc/storm/%'"
        return int(db.execute(q).fetchone()[0])
    finally:
        db.close()


@dataclass
class StormResult:
    files: int
    crashed: bool
    not_exactly_once: int
    stale: int
    create_settle: float
    delete_settle: float
    peak_rss: int
    alerts: int
    iw_create: float
    iw_delete: float
    iw_seen: int


# Loaded into the daemon (as sitecustomize) by --tracemalloc: at each new high of traced memory,
# the allocation sites holding the most are written to the file (what holds the memory at the peak).
TRACER = """
import os, threading, time, tracemalloc
out = os.environ["NIXDRIFT_BENCH_TRACEMALLOC"]
tracemalloc.start(8)
def _watch():
    high = 0
    while True:
        time.sleep(1.0)
        current, _peak = tracemalloc.get_traced_memory()
        if current < max(high * 1.1, 32 << 20):
            continue
        high = current
        top = tracemalloc.take_snapshot().statistics("traceback")[:12]
        lines = [f"traced {current / 2**20:.1f} MiB"]
        for s in top:
            lines.append(f"{s.size / 2**20:8.1f} MiB {s.count:9d} blocks")
            lines.extend("      " + line for line in s.traceback.format(limit=8))
        with open(out, "w") as f:
            f.write("\\n".join(lines) + "\\n")
threading.Thread(target=_watch, daemon=True).start()
"""


def tracer_env(out: str | None, tmp: Path) -> dict[str, str]:
    if not out:
        return {}
    site = tmp / "tracer"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TRACER)
    return {"PYTHONPATH": str(site), "NIXDRIFT_BENCH_TRACEMALLOC": out}


def daemon_storm(
    files: int, deadline: float, trace: str | None = None
) -> tuple[bool, int, int, float, float, int, int]:
    tmp = Path(tempfile.mkdtemp(prefix="nixdrift-storm-"))
    host = build_host(tmp)
    (tmp / "config.yaml").write_text("alertThreshold: low\n")
    env = tracer_env(trace and f"{trace}.{files}", tmp)
    d = Daemon(host=host, state=tmp / "state", config=tmp / "config.yaml", env=env).start(watchdog_usec=None)
    d.wait_ready(120)
    rss = PeakRSS(d.proc.pid)  # type: ignore[union-attr]
    names = {f"/etc/storm/f{i:06d}" for i in range(files)}
    storm = host.etc("storm")
    started = time.monotonic()
    storm.mkdir()
    for name in names:
        (host.root / name.lstrip("/")).write_text("x\n")
    create, delete = float("nan"), float("nan")
    try:
        wait_for(lambda: d.exited() or len(counts(d.state, "new")) >= files, deadline, "the storm recorded")
        create = time.monotonic() - started
        started = time.monotonic()
        shutil.rmtree(storm)
        wait_for(lambda: d.exited() or len(counts(d.state, "resolved")) >= files, deadline, "the storm resolved")
        delete = time.monotonic() - started
    except AssertionError as exc:
        print(f"  ({files}: {exc})", file=sys.stderr)
    new, resolved = counts(d.state, "new"), counts(d.state, "resolved")
    wrong = sum(1 for n in names if new.get(n) != 1 or resolved.get(n) != 1)
    crashed = d.exited()
    left = stale(d.state)
    alerts = sum(1 for x in d.lines if x.startswith("nixdrift: ALERT"))
    peak = rss.stop()
    if not crashed:
        d.stop(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
    return crashed, wrong, left, create, delete, peak, alerts


def undelivered(state: Path) -> int:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=60)
    try:
        return int(db.execute("SELECT COUNT(*) FROM alerts WHERE delivered_at IS NULL").fetchone()[0])
    finally:
        db.close()


def kill_trials(trials: int, files: int, deadline: float, seed: int) -> tuple[int, int, int, int, list[float]]:
    """Issue 9's repro, `trials` times on one host and state: `files` files created in a directory
    of /etc, the daemon killed with SIGKILL a random 0.2-1.5 s later (mid-storm), then started
    again. Returns (files, files without exactly one "new" event, alerts recorded and never
    delivered, restarts that never reached READY, the kill times)."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="nixdrift-kill-"))
    host = build_host(tmp)
    (tmp / "config.yaml").write_text("alertThreshold: low\n")
    state = tmp / "state"
    d = Daemon(host=host, state=state, config=tmp / "config.yaml").start(watchdog_usec=None)
    d.wait_ready(120)
    wrong = unready = 0
    kills = []
    for trial in range(trials):
        below = f"/etc/kill{trial}/"
        directory = host.etc(f"kill{trial}")
        directory.mkdir()
        started = time.monotonic()
        for i in range(files):
            (directory / f"f{i:05d}").write_text("x\n")
        kills.append(rng.uniform(0.2, 1.5))
        time.sleep(max(0.0, started + kills[-1] - time.monotonic()))
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait(30)
        d = Daemon(host=host, state=state, config=tmp / "config.yaml").start(watchdog_usec=None)
        try:
            d.wait_ready(300)
            wait_for(lambda b=below: len(counts(state, "new", b)) >= files, deadline, "the files recorded")
        except AssertionError as exc:
            unready += 1
            print(f"  (kill {trial}: {exc})", file=sys.stderr)
        new = counts(state, "new", below)
        wrong += sum(1 for i in range(files) if new.get(f"{below}f{i:05d}") != 1)
    with contextlib.suppress(AssertionError):  # what is left is the figure
        wait_for(lambda: undelivered(state) == 0, 60, "every recorded alert delivered")
    left = undelivered(state)
    d.stop(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
    return trials * files, wrong, left, unready, kills


def inotifywait_storm(files: int) -> tuple[float, float, int]:
    """The same storm under a plain directory watched by `inotifywait -r`: the floor."""
    tmp = Path(tempfile.mkdtemp(prefix="nixdrift-iw-"))
    proc = subprocess.Popen(
        ["inotifywait", "-m", "-r", "-q", "-e", "create,delete", "--format", "%e %w%f", str(tmp)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    time.sleep(0.5)  # inotifywait has no readiness signal
    storm = tmp / "storm"
    started = time.monotonic()
    storm.mkdir()
    for i in range(files):
        (storm / f"f{i:06d}").write_text("x\n")
    with contextlib.suppress(AssertionError):  # its queue overflowed: it lost events and never says which
        wait_for(lambda: sum(1 for x in lines if x.startswith("CREATE")) >= files + 1, 60, "inotifywait creates")
    create = time.monotonic() - started
    started = time.monotonic()
    shutil.rmtree(storm)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: sum(1 for x in lines if x.startswith("DELETE")) >= files + 1, 60, "inotifywait deletes")
    delete = time.monotonic() - started
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return create, delete, len(lines)


def latency_with_active(active: int, edits: int) -> tuple[list[float], float]:
    tmp = Path(tempfile.mkdtemp(prefix="nixdrift-active-"))
    host = build_host(tmp)
    many = host.etc("many")
    many.mkdir()
    for i in range(active):
        (many / f"m{i:06d}").write_text("x\n")
    (tmp / "config.yaml").write_text("alertThreshold: low\n")
    d = Daemon(host=host, state=tmp / "state", config=tmp / "config.yaml").start(watchdog_usec=None)
    started = time.monotonic()
    d.wait_ready(600)
    ready = time.monotonic() - started
    out: list[float] = []
    for i in range(edits):
        seen = len(d.alerts())
        path = f"/etc/edit-{i}.conf"
        started = time.monotonic()
        host.etc(f"edit-{i}.conf").write_text("x\n")
        wait_for(lambda p=path, s=seen: any(a.path == p for a in d.alerts()[s:]), 60, f"alert {i}")
        out.append(time.monotonic() - started)
    d.stop(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
    return out, ready


def print_storms(results: list[StormResult]) -> None:
    print(f"{'storm (files created, then deleted)':<44}" + "".join(f"{r.files:>16,}" for r in results))
    rows = [
        ("daemon crashed", [("yes" if r.crashed else "no") for r in results]),
        ("files without exactly one new + one resolved", [str(r.not_exactly_once) for r in results]),
        ("stale findings after the delete", [str(r.stale) for r in results]),
        ("settle: every file recorded (s)", [f"{r.create_settle:.1f}" for r in results]),
        ("settle: every file resolved (s)", [f"{r.delete_settle:.1f}" for r in results]),
        ("peak RSS (MiB)", [f"{r.peak_rss / 2**20:.1f}" for r in results]),
        ("journal alerts (coalesced per directory)", [str(r.alerts) for r in results]),
        ("inotifywait -r: create events seen (s)", [f"{r.iw_create:.1f}" for r in results]),
        ("inotifywait -r: delete events seen (s)", [f"{r.iw_delete:.1f}" for r in results]),
        ("inotifywait -r: events printed / expected", [f"{r.iw_seen}/{2 * r.files + 2}" for r in results]),
    ]
    for name, values in rows:
        print(f"{name:<44}" + "".join(f"{v:>16}" for v in values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="20000,100000", help="storm sizes, comma separated")
    ap.add_argument("--active", type=int, default=15_000, help="findings already recorded for the latency run")
    ap.add_argument("--edits", type=int, default=50)
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds to wait for a storm to settle")
    ap.add_argument("--no-floor", action="store_true", help="skip the inotifywait runs")
    ap.add_argument(
        "--tracemalloc",
        metavar="FILE",
        help="trace the storm daemons' allocations; FILE.<files> gets the top sites at the highest point"
        " (slows the daemon: its times and RSS are then not the figures)",
    )
    ap.add_argument("--kills", type=int, default=0, help="SIGKILL trials (issue 9's repro) before the storms")
    ap.add_argument("--kill-files", type=int, default=3000, help="files created in each SIGKILL trial")
    ap.add_argument("--seed", type=int, default=9, help="seed of the kill times")
    args = ap.parse_args()
    if args.kills:
        total, wrong, left, unready, kills = kill_trials(args.kills, args.kill_files, args.deadline, args.seed)
        print(
            f"SIGKILL mid-storm, {args.kills} times ({args.kill_files:,} files each; killed after "
            + ", ".join(f"{k:.2f}" for k in kills)
            + " s), restarted on the same state:"
        )
        print(
            f"  files without exactly one new event: {wrong} of {total:,}; alerts never delivered: {left};"
            f" restarts not READY or not settled: {unready}"
        )
    results: list[StormResult] = []
    for files in (int(x) for x in args.files.split(",") if x):
        crashed, wrong, left, create, delete, peak, alerts = daemon_storm(files, args.deadline, args.tracemalloc)
        iw_create, iw_delete, iw_seen = (
            inotifywait_storm(files) if not args.no_floor else (float("nan"), float("nan"), 0)
        )
        results.append(
            StormResult(files, crashed, wrong, left, create, delete, peak, alerts, iw_create, iw_delete, iw_seen)
        )
    if results:
        print_storms(results)
    if args.active and args.edits:
        lat, ready = latency_with_active(args.active, args.edits)
        print(f"\nwith {args.active:,} active findings: start scan to READY {ready:.1f} s")
        print(f"edit-to-alert p50 {statistics.median(lat) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
