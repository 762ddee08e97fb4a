"""Daemon benchmark: edit-to-alert latency vs inotifywait, RSS idle and after a storm, idle CPU.

    .venv/bin/python benchmarks/bench_daemon.py [--edits 200] [--idle 60] [--storm 10000]

Builds the daemon tests' fixture host (real nix), runs `nixdrift daemon` on it and prints a table.
No assertions: figures only.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "daemon"))

from daemon_harness import Daemon, wait_for
from daemon_host import build_host


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def daemon_latencies(d: Daemon, n: int) -> list[float]:
    out: list[float] = []
    for i in range(n):
        path = d.host.etc(f"bench-{i}.conf")
        seen = len(d.alerts())
        started = time.monotonic()
        path.write_text("x\n")
        wait_for(lambda p=f"/etc/bench-{i}.conf", s=seen: any(a.path == p for a in d.alerts()[s:]), 30, f"alert {i}")
        out.append(time.monotonic() - started)
    return out


def inotifywait_latencies(directory: Path, n: int) -> list[float]:
    proc = subprocess.Popen(
        ["inotifywait", "-m", "-q", "-e", "close_write", "--format", "%f", str(directory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    time.sleep(0.5)  # inotifywait has no readiness signal; let it set its watch
    out: list[float] = []
    for i in range(n):
        name = f"iw-{i}.conf"
        started = time.monotonic()
        (directory / name).write_text("x\n")
        wait_for(lambda name=name: any(x.strip() == name for x in lines), 10, name)
        out.append(time.monotonic() - started)
    proc.terminate()
    proc.wait()
    return out


def recorded(state: Path) -> set[str]:
    """Paths the daemon's history recorded as new (a storm's alerts are coalesced per directory)."""
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=60)
    try:
        return {str(r[0]) for r in db.execute("SELECT path FROM events WHERE kind = 'new'")}
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    ap.add_argument("--storm", type=int, default=10_000, help="file changes in the storm")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nixdrift-bench-"))
    host = build_host(tmp)
    (tmp / "config.yaml").write_text("alertThreshold: low\n")
    d = Daemon(host=host, state=tmp / "state", config=tmp / "config.yaml").start(watchdog_usec=None)
    d.wait_ready()
    proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    rss_idle = proc.memory_info().rss
    cpu0 = proc.cpu_times()
    time.sleep(args.idle)
    cpu1 = proc.cpu_times()
    idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / args.idle * 100
    ours = daemon_latencies(d, args.edits)
    theirs = inotifywait_latencies(host.root / "etc", args.edits)
    storm = host.etc("storm")
    storm.mkdir()
    files = max(1, args.storm // 5)
    started = time.monotonic()
    for rnd in range(5):
        for i in range(files):
            (storm / f"s{i}").write_text(f"{rnd}\n")
    wrote = time.monotonic() - started
    want = {f"/etc/storm/s{i}" for i in range(files)}
    wait_for(lambda: want <= recorded(d.state), 300, "storm recorded")  # the journal gets one alert per burst
    storm_done = time.monotonic() - started
    rss_storm = proc.memory_info().rss
    d.stop()

    rows = [
        ("edit-to-alert p50 (ms)", f"{statistics.median(ours) * 1000:.1f}", f"{statistics.median(theirs) * 1000:.1f}"),
        ("edit-to-alert p99 (ms)", f"{percentile(ours, 99) * 1000:.1f}", f"{percentile(theirs, 99) * 1000:.1f}"),
        ("RSS idle (MiB)", f"{rss_idle / 2**20:.1f}", "-"),
        (f"RSS after storm of {files * 5} changes (MiB)", f"{rss_storm / 2**20:.1f}", "-"),
        (f"storm: written in {wrote:.1f} s, all alerted after (s)", f"{storm_done:.1f}", "-"),
        (f"CPU idle over {args.idle:.0f} s (%)", f"{idle_cpu:.2f}", "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'nixdrift':>10}  {'inotifywait':>11}")
    for name, a, b in rows:
        print(f"{name:<{width}}  {a:>10}  {b:>11}")


if __name__ == "__main__":
    main()
