"""Benchmark `nixdrift check` on a large synthetic NixOS host, next to AIDE on the same /etc.

    .venv/bin/python benchmarks/bench_check.py [--runs 5] [--etc 5000 --big 50000 --units 1000
        --users 300 --mounts 100 --profiles 50] [--json out.json] [--keep DIR] [--profile N]

For each size of /etc (`--etc`, and `--big` unless 0) it prints, side by side from one run, the
median of N runs of:
  (a) `aide --check` over the host's /etc (initialised once before),
  (b) a cold `nixdrift check` CLI: warm evaluation cache, no stat cache (deleted before each run),
  (c) a warm `nixdrift check` CLI: answered by the scan index, the answer of the previous check while
      nothing it read has changed (and, beside it, (c') `--fresh`: a full scan with the stat cache),
  (d) `nixdrift check` on the live root answered from the state a real `nixdrift daemon` (run on
      the host's tree with --root, then stopped) published in its state directory,
and `nixdrift --help` (the installed console script, bytecode cached); each against AIDE, with the targets of
issue 11, the peak RSS of (c), and how each grows from the small /etc to the big one.
`--profile N` also prints the top N functions of a cProfile of one warm check (in-process).
Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixdrift import pipeline, scanindex
from nixdrift.declared import evaluate
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.pipeline import ScanOptions
from nixdrift.process import run, which
from nixdrift.rootfs import Root
from nixdrift.service.history import stored_report

# The installed command (its console script), as a user runs it; `python -m nixdrift` where there is
# none (it adds runpy and importlib.util, 10-20 ms, to every start).
_SCRIPT = Path(sys.executable).with_name("nixdrift")
PY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "nixdrift"]
# Bytecode is cached, as an installed package has it (outside the checkout; PYTHONDONTWRITEBYTECODE,
# if set, would make every start compile nixdrift from source).
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "NIXDRIFT_QUIET": "1",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "nixdrift-bench-pycache"),
}


def synthetic_host(
    base: Path, etc: int, units: int, users: int, mounts: int, profiles: int, copy_every: int = 10
) -> HostTree:
    """`etc` entries below /etc/bench: links into /etc/static, and every `copy_every`-th one a managed
    copy (listed in /etc/.clean, compared byte for byte with its store source: what gets hashed)."""
    host = HostTree(base, name="bench")
    host.with_etc_tree("bench", {f"d{i % 50:02d}/file{i}.conf": f"key{i} = value {i}\n" for i in range(etc)})
    for i in range(0, etc, copy_every or etc + 1):
        host.decl.etc[f"bench/d{i % 50:02d}/file{i}.conf"].update(mode="0644", user="+0", group="+0")
    for i in range(units):
        host.with_service(f"svc{i}", wanted_by=["multi-user.target"] if i % 4 else [])
    for i in range(users):
        host.with_user(f"user{i}", groups=["users"] if i % 3 else ["video"], packages=["hello"] if i < profiles else [])
    for i in range(mounts):
        host.with_mount(f"/srv/vol{i}", device=f"/dev/disk/by-label/vol{i}", fs_type="ext4")
    host.with_firewall(tcp=[22, 80, 443])
    return host.with_nameservers("1.1.1.1")


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    max_rss_mib: float
    stdout: str
    stderr: str
    code: int


def spawn(argv: list[str]) -> Sample:
    """One process, its wall time and its own peak RSS (wait4's rusage, not the largest child so far)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Sample(seconds, usage.ru_maxrss / 1024, out.read().decode(), err.read().decode(), proc.returncode)


def median_of(runs: int, argv: list[str], before: Callable[[], None] | None = None) -> tuple[float, list[Sample]]:
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        s = spawn(argv)
        if s.code not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed ({s.code}): {s.stderr.strip()[-2000:]}")
        samples.append(s)
    return statistics.median(s.seconds for s in samples), samples


def check_argv(built: BuiltHost, cache: Path, *extra: str) -> list[str]:
    return [*PY, "check", "--flake", str(built.flake), "--host", built.name, "--cache-dir", str(cache), *extra]


def aide_conf(work: Path, etc_dir: Path) -> Path:
    conf = work / "aide.conf"
    conf.write_text(
        f"database_in=file:{work}/aide.db\n"
        f"database_out=file:{work}/aide.db.new\n"
        "gzip_dbout=no\n"
        "NIXDRIFT = p+u+g+n+ftype+sha256\n"
        f"{etc_dir} NIXDRIFT\n"
        f"!{etc_dir}/nixos/\\.git\n"
    )
    return conf


def bench_aide(work: Path, etc_dir: Path, runs: int) -> float | None:
    aide = which("aide") or "/usr/bin/aide"
    if not Path(aide).exists():
        return None
    conf = aide_conf(work, etc_dir)
    run([aide, "--init", "-c", str(conf)], check=False, timeout=3600)
    os.replace(work / "aide.db.new", work / "aide.db")
    samples = []
    for _ in range(runs):
        s = spawn([aide, "--check", "-c", str(conf)])
        samples.append(s.seconds)
    return statistics.median(samples)


def daemon_state(built: BuiltHost, work: Path) -> Path:
    """A real daemon scans the host tree and publishes its state; then it is stopped."""
    state = work / "daemon-state"
    # The daemon watches "this machine": the tree carries its machine-id, which is how a check on the
    # live root knows the daemon's answer is of its own host (nixdrift.quick); nothing compares it.
    mid, here = built.root / "etc" / "machine-id", Path("/etc/machine-id")
    mid.unlink(missing_ok=True)
    if here.is_file():
        mid.write_bytes(here.read_bytes())
    argv = [*PY, "daemon", "--flake", str(built.flake), "--host", built.name, "--root", str(built.root)]
    argv += ["--state-dir", str(state)]
    env = {**ENV, "NIXDRIFT_JOURNAL_SOCKET": "/nonexistent"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 1800
        while stored_report(state, 3600) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon published no report: {(proc.communicate()[1] or '')[-2000:]}")
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    return state


def bench_eval(base: Path, runs: int) -> dict[str, float]:
    """A cold `nix eval` of the demo flake against a cache hit of the same identity."""
    built = demo_host(base / "demo").build()
    ref = str(built.flake)

    def timed(fn: Callable[[], object]) -> float:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    def cold() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate(ref, built.name, Path(tmp))

    cache = base / "eval-cache"
    evaluate(ref, built.name, cache)
    cold_s = timed(cold)
    hit_s = timed(lambda: evaluate(ref, built.name, cache))
    return {"cold_s": cold_s, "hit_s": hit_s, "ratio": hit_s / cold_s}


def stat_caches(cache: Path) -> list[Path]:
    return sorted(cache.glob("digests-*.json"))


def measure(built: BuiltHost, work: Path, runs: int) -> dict[str, Any]:
    cache = work / "cache"
    root = ["--root", str(built.root), "--format", "json"]
    opts = ScanOptions(str(built.flake), built.name, Root.of(built.root), cache)
    settled = time.time_ns() + scanindex.RACY_NS  # then what the build wrote is older than the racy window
    pipeline.scan(opts)  # the evaluation cache and the stat cache
    while time.time_ns() < settled:
        time.sleep(0.1)
    in_process, traced = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pipeline.scan(opts)
        in_process.append(time.perf_counter() - start)
        start = time.perf_counter()
        with scanindex.tracing([str(cache)]) as trace:
            pipeline.scan(opts)
        manifest = trace.manifest()
        traced.append(time.perf_counter() - start)
    aide = bench_aide(work, built.root / "etc", runs)
    spawn(check_argv(built, cache, *root))  # untimed: compiles the bytecode once

    def no_stat_cache() -> None:  # nor the scan index's answer: (b) is a real scan
        for p in stat_caches(cache):
            p.unlink()
        shutil.rmtree(cache / "answers", ignore_errors=True)

    cold, _ = median_of(runs, check_argv(built, cache, *root), before=no_stat_cache)
    spawn(check_argv(built, cache, *root))  # leaves the stat cache
    warm_scan, _ = median_of(runs, check_argv(built, cache, *root, "--fresh"))
    index = answered_by_index(built, cache, root)
    warm, warm_samples = median_of(runs, check_argv(built, cache, *root))
    if INDEX_HEADER not in warm_samples[0].stderr:
        raise SystemExit(f"(c) was not answered by the scan index: {warm_samples[0].stderr[-2000:]}")
    warm_rss = peak_rss_mib(check_argv(built, cache, *root))  # before the daemon's run changes the tree
    state = daemon_state(built, work)
    live = check_argv(built, cache, "--format", "json", "--state-dir", str(state), "--not-nixos-ok")
    daemon, daemon_samples = median_of(runs, live)
    if "from the daemon's scan at" not in daemon_samples[0].stderr:
        raise SystemExit(f"(d) was not answered by the daemon's state: {daemon_samples[0].stderr[-2000:]}")
    findings = len(json.loads(warm_samples[0].stdout)["findings"])
    return {
        "aide_s": aide,
        "in_process_warm_s": statistics.median(in_process),
        "in_process_traced_s": statistics.median(traced),
        "indexable": manifest is not None,
        "index_bytes": index,
        "warm_scan_s": warm_scan,
        "cold_s": cold,
        "warm_s": warm,
        "daemon_s": daemon,
        "warm_peak_rss_mib": warm_rss or max(s.max_rss_mib for s in warm_samples),
        "stat_cache_bytes": sum(p.stat().st_size for p in stat_caches(cache)),
        "findings": findings,
    }


def peak_rss_mib(argv: list[str]) -> float | None:
    """One run's own peak RSS, measured by GNU time (a small process) where it is installed: a child
    of this benchmark inherits the benchmark's high-water mark across exec (Linux keeps a thread
    group's maxrss through execve), so wait4's figure is this process's size, not the check's."""
    gnu_time = Path("/usr/bin/time")
    if not gnu_time.exists():
        return None
    with tempfile.NamedTemporaryFile() as out:
        spawn([str(gnu_time), "-f", "%M", "-o", out.name, *argv])
        text = Path(out.name).read_text().strip().splitlines()
    return int(text[-1]) / 1024 if text and text[-1].isdigit() else None


INDEX_HEADER = "from the previous check at"


def answered_by_index(built: BuiltHost, cache: Path, root: list[str]) -> int:
    """Checks until one is answered by the scan index (a scan that raced with the host's build is not
    indexed: the next one is); the size of its manifest."""
    deadline = time.monotonic() + 120
    while INDEX_HEADER not in spawn(check_argv(built, cache, *root)).stderr:
        if time.monotonic() > deadline:
            raise SystemExit("no check was answered by the scan index")
        time.sleep(0.5)
    return sum(p.stat().st_size for p in (cache / "answers").glob("*/answer-*.inputs"))


def profile_warm(built: BuiltHost, work: Path, top: int) -> str:
    opts = ScanOptions(str(built.flake), built.name, Root.of(built.root), work / "cache")
    pipeline.scan(opts)
    prof = cProfile.Profile()
    prof.enable()
    pipeline.scan(opts)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f} x" if a is not None and b else "   n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--etc", type=int, default=5000)
    p.add_argument("--big", type=int, default=50000, help="entries of the second, bigger /etc (0: none)")
    p.add_argument("--units", type=int, default=1000)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--mounts", type=int, default=100)
    p.add_argument("--profiles", type=int, default=50)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", metavar="DIR", help="build in DIR and keep it")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print a warm check's top N functions")
    args = p.parse_args(argv)

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nixdrift-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    sizes = [args.etc, *([args.big] if args.big else [])]
    figures: dict[str, Any] = {"runs": args.runs, "load_average": os.getloadavg(), "sizes": {}}
    profile = ""
    for n in sizes:
        work = base / f"etc{n}"
        work.mkdir(exist_ok=True)
        print(f"building the synthetic host with {n} /etc entries in {work} ...", file=sys.stderr)
        start = time.perf_counter()
        built = synthetic_host(work / "host", n, args.units, args.users, args.mounts, args.profiles).build()
        build_s = time.perf_counter() - start
        print(f"  built in {build_s:.1f} s; measuring ...", file=sys.stderr)
        figures["sizes"][str(n)] = {"build_s": build_s, **measure(built, work, args.runs)}
        if args.profile and n == args.etc:
            profile = profile_warm(built, work, args.profile)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    help_s, _ = median_of(max(args.runs, 11), [*PY, "--help"])
    figures["help_s"] = help_s
    figures["eval"] = ev = bench_eval(base, args.runs)
    figures["load_average_after"] = os.getloadavg()

    small = figures["sizes"][str(args.etc)]
    big = figures["sizes"].get(str(args.big)) if args.big else None
    print(
        f"nixdrift check benchmark: {args.units} units, {args.users} users, {args.mounts} mounts, "
        f"{args.profiles} profiles; median of {args.runs} runs; load average before "
        + " ".join(f"{x:.2f}" for x in figures["load_average"])
    )
    head = f"  {'':<44} {args.etc:>7} /etc" + (f"   {args.big:>7} /etc   big/small" if big else "")
    print(head)
    rows = [
        ("(a) aide --check", "aide_s", None),
        ("(b) check, cold (no stat cache)", "cold_s", None),
        ("(c) check, warm: answered by the scan index", "warm_s", "<= 0.33 x aide"),
        ("(c') check --fresh, warm: a traced scan", "warm_scan_s", None),
        ("(d) check answered by the daemon's state", "daemon_s", "<= 0.1 x aide"),
        ("warm check in-process (no start-up)", "in_process_warm_s", None),
        ("the same, traced, with its manifest", "in_process_traced_s", None),
    ]
    for name, key, target in rows:
        line = f"  {name:<44} {small[key] or 0:8.3f} s"
        if big:
            line += f"  {big[key] or 0:8.3f} s  {ratio(big[key], small[key])}"
        print(line + (f"   target {target}" if target else ""))
    for name, key in (("(b) / (a)", "cold_s"), ("(c) / (a)", "warm_s"), ("(d) / (a)", "daemon_s")):
        line = f"  {name:<44} {ratio(small[key], small['aide_s']):>10}"
        if big:
            line += f"  {ratio(big[key], big['aide_s']):>10}"
        print(line)
    print(f"  {'nixdrift --help':<44} {help_s:8.3f} s   target <= 0.1 s")
    print(f"  {'demo flake: cold nix eval / cache hit':<44} {ev['cold_s']:8.3f} s  {ev['hit_s']:8.4f} s")
    print(f"  {'cache hit / cold evaluation':<44} {100 * ev['ratio']:7.2f} %   target < 5 %")
    line = f"  {'peak RSS of (c)':<44} {small['warm_peak_rss_mib']:6.0f} MiB"
    if big:
        line += f"  {big['warm_peak_rss_mib']:6.0f} MiB"
    print(line)
    line = f"  {'scan index manifest size':<44} {small['index_bytes'] / 1024:6.0f} KiB"
    if big:
        line += f"  {big['index_bytes'] / 1024:6.0f} KiB"
    print(line)
    line = f"  {'stat cache size':<44} {small['stat_cache_bytes'] / 1024:6.0f} KiB"
    if big:
        line += f"  {big['stat_cache_bytes'] / 1024:6.0f} KiB"
    print(line)
    indexable = "yes" if small["indexable"] else "NO"
    print(
        f"  traced in-process scan indexable: {indexable}"
        + (f" / {'yes' if big['indexable'] else 'NO'}" if big else "")
    )
    print(f"  findings on the synthetic host: {small['findings']}" + (f" / {big['findings']}" if big else ""))
    print("  load average after: " + " ".join(f"{x:.2f}" for x in figures["load_average_after"]))
    if profile:
        print("\nwarm check, in-process, cProfile (cumulative):\n" + profile)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
