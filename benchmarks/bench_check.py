"""Benchmark `nixdrift check` on a large synthetic NixOS host, next to AIDE on the same /etc.

    .venv/bin/python benchmarks/bench_check.py [--runs 5] [--etc 5000 --units 1000 --users 300
        --mounts 100 --profiles 50] [--json out.json] [--keep DIR]

Prints a table: warm-cache `check` (in-process pipeline.scan and the CLI, median of N runs),
`aide --check` over the same /etc tree and the ratio, a cold evaluation of the demo flake against a
cache hit, and peak RSS. Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nixdrift import pipeline
from nixdrift.declared import evaluate
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.pipeline import ScanOptions
from nixdrift.process import run, which
from nixdrift.rootfs import Root


def synthetic_host(base: Path, etc: int, units: int, users: int, mounts: int, profiles: int) -> HostTree:
    host = HostTree(base, name="bench")
    host.with_etc_tree("bench", {f"d{i % 50:02d}/file{i}.conf": f"key{i} = value {i}\n" for i in range(etc)})
    for i in range(units):
        host.with_service(f"svc{i}", wanted_by=["multi-user.target"] if i % 4 else [])
    for i in range(users):
        host.with_user(f"user{i}", groups=["users"] if i % 3 else ["video"], packages=["hello"] if i < profiles else [])
    for i in range(mounts):
        host.with_mount(f"/srv/vol{i}", device=f"/dev/disk/by-label/vol{i}", fs_type="ext4")
    host.with_firewall(tcp=[22, 80, 443])
    return host.with_nameservers("1.1.1.1")


def timed(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def scan_opts(built: BuiltHost, cache: Path) -> ScanOptions:
    return ScanOptions(flake=str(built.flake), host=built.name, root=Root.of(built.root), cache_dir=cache)


def cli(built: BuiltHost, cache: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "nixdrift",
        "check",
        "--flake",
        str(built.flake),
        "--host",
        built.name,
        "--root",
        str(built.root),
        "--cache-dir",
        str(cache),
        "--format",
        "json",
    ]
    proc = run(argv, check=False, timeout=3600, env={**os.environ, "NIXDRIFT_QUIET": "1"})
    if proc.returncode not in (0, 1):
        raise SystemExit(f"nixdrift check failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


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


def bench_aide(work: Path, etc_dir: Path, runs: int) -> dict[str, Any]:
    aide = which("aide") or "/usr/bin/aide"
    if not Path(aide).exists():
        return {"available": False}
    conf = aide_conf(work, etc_dir)
    run([aide, "--init", "-c", str(conf)], check=False, timeout=3600)
    os.replace(work / "aide.db.new", work / "aide.db")
    median, samples = timed(lambda: run([aide, "--check", "-c", str(conf)], check=False, timeout=3600), runs)
    return {"available": True, "median_s": median, "samples_s": samples}


def bench_eval(base: Path, runs: int) -> dict[str, Any]:
    """A cold `nix eval` of the demo flake against a cache hit of the same identity."""
    built = demo_host(base / "demo").build()
    ref = str(built.flake)

    def cold() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate(ref, built.name, Path(tmp))

    cache = base / "eval-cache"
    evaluate(ref, built.name, cache)
    cold_s, _ = timed(cold, runs)
    hit_s, _ = timed(lambda: evaluate(ref, built.name, cache), runs)
    return {"cold_s": cold_s, "hit_s": hit_s, "ratio": hit_s / cold_s if cold_s else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--etc", type=int, default=5000)
    p.add_argument("--units", type=int, default=1000)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--mounts", type=int, default=100)
    p.add_argument("--profiles", type=int, default=50)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", metavar="DIR", help="build in DIR and keep it")
    args = p.parse_args(argv)

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nixdrift-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"building the synthetic host in {base} ...", file=sys.stderr)
    start = time.perf_counter()
    built = synthetic_host(base / "host", args.etc, args.units, args.users, args.mounts, args.profiles).build()
    build_s = time.perf_counter() - start
    cache = base / "cache"
    opts = scan_opts(built, cache)
    report = pipeline.scan(opts)  # warms the evaluation cache
    scan_s, scan_samples = timed(lambda: pipeline.scan(opts), args.runs)
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cli_s, cli_samples = timed(lambda: cli(built, cache), args.runs)
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    aide = bench_aide(base, built.root / "etc", args.runs)
    ev = bench_eval(base, args.runs)
    figures: dict[str, Any] = {
        "host": {k: getattr(args, k) for k in ("etc", "units", "users", "mounts", "profiles")},
        "runs": args.runs,
        "build_s": build_s,
        "findings": len(report.findings),
        "check_in_process_median_s": scan_s,
        "check_in_process_samples_s": scan_samples,
        "check_cli_median_s": cli_s,
        "check_cli_samples_s": cli_samples,
        "aide": aide,
        "aide_ratio": scan_s / aide["median_s"] if aide.get("median_s") else None,
        "eval": ev,
        "peak_rss_mib": {"in_process": rss_self, "largest_child": rss_children},
    }
    rows = [
        ("host build (nix build + activation)", f"{build_s:8.2f} s"),
        ("check, warm cache, in-process (median)", f"{scan_s:8.3f} s"),
        ("check, warm cache, CLI (median)", f"{cli_s:8.3f} s"),
        ("aide --check, same /etc (median)", f"{aide['median_s']:8.3f} s" if aide.get("median_s") else "     n/a"),
        ("check / aide", f"{figures['aide_ratio']:8.2f} x" if figures["aide_ratio"] else "     n/a"),
        ("demo flake: cold nix eval", f"{ev['cold_s']:8.3f} s"),
        ("demo flake: cache hit", f"{ev['hit_s']:8.4f} s"),
        ("cache hit / cold (target < 5%)", f"{100 * ev['ratio']:7.2f} %"),
        ("peak RSS in-process / largest child", f"{rss_self:.0f} / {rss_children:.0f} MiB"),
        ("findings on the synthetic host", f"{len(report.findings):8d}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"nixdrift check benchmark: {args.etc} etc entries, {args.units} units, {args.users} users, "
        f"{args.mounts} mounts, {args.profiles} profiles; {args.runs} runs"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
