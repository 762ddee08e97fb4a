"""Fleet aggregation over 10,000 host reports, and one report of 2,000 findings before and after the
512 KiB cap. Prints figures (time, peak memory, sizes); asserts nothing.

    .venv/bin/python benchmarks/bench_fleet.py [--hosts 10000] [--findings 2000]
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nixdrift import fleet
from nixdrift.models import Category, Finding, FlakeInfo, Generations, Kind, Report, Severity
from nixdrift.models import Fix as FixRecord
from nixdrift.sinks.kube import MAX_BYTES, policy_report, wire_size

T = TypeVar("T")
NOW = datetime.now(UTC).replace(microsecond=0)
STORE = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-host-24.05"


def measure(fn: Callable[[], T]) -> tuple[T, float, float]:
    """(result, seconds, peak MiB allocated while it ran): timed on a plain run, then run again
    under tracemalloc (which slows Python down) for the memory figure."""
    began = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - began
    tracemalloc.start()
    fn()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak / 2**20


def finding(i: int, rng: random.Random, long: bool = False) -> Finding:
    category = list(Category)[i % len(Category)]
    pad = "x" * (200 if long else 0)
    return Finding(
        id=f"{category.value}/subject-{i}/aspect",
        category=category,
        subject=f"subject-{i}",
        kind=rng.choice(list(Kind)),
        expected=f"declared value {i}{pad}",
        actual=f"live value {i}{pad}",
        message=f"subject-{i} differs from its declaration{pad}",
        fix=FixRecord(nix="{ }", command="true", safe=False),
        severity=rng.choice(list(Severity)),
        evidence={"path": f"/etc/generated/file-{i}"},
        last_seen="2024-05-01T12:00:00Z",
    )


def report(host: str, findings: list[Finding]) -> Report:
    return Report(
        host=host,
        generated_at="2024-05-01T12:00:00Z",
        flake=FlakeInfo(reference="/etc/nixos", revision="8f3e2a1b"),
        generations=Generations(STORE, STORE, STORE),
        categories=dict.fromkeys(Category, "ok"),
        findings=tuple(findings),
    )


def fleet_objects(hosts: int, rng: random.Random) -> list[dict[str, Any]]:
    """PolicyReports as the API server would list them: 0-30 findings per host from a pool of 400
    ids (so drift is shared), 3% of hosts silent for a day."""
    pool = [finding(i, rng) for i in range(400)]
    objs = []
    for n in range(hosts):
        obj = policy_report(report(f"host-{n:05d}", rng.sample(pool, rng.randint(0, 30))), heartbeat=3600)
        silent = timedelta(days=1) if rng.random() < 0.03 else timedelta(minutes=rng.randint(0, 50))
        obj["metadata"]["annotations"]["nixdrift/sent-at"] = (NOW - silent).isoformat().replace("+00:00", "Z")
        objs.append(obj)
    return objs


def bench_fleet(hosts: int) -> None:
    rng = random.Random(1)
    began = time.perf_counter()
    objs = fleet_objects(hosts, rng)
    results = sum(len(o["results"]) for o in objs)
    print(f"fleet: built {hosts} reports ({results} results) in {time.perf_counter() - began:.2f}s")
    view, seconds, peak = measure(lambda: fleet.aggregate(objs, NOW, None))
    print(
        f"fleet: aggregate {hosts} hosts: {seconds * 1000:.0f} ms, peak {peak:.1f} MiB, "
        f"{len(view.stale)} stale, {len(view.shared)} shared findings "
        f"(top: {view.shared[0].rule} on {len(view.shared[0].hosts)} hosts)"
    )
    for fmt in fleet.FORMATS:
        text, seconds, peak = measure(lambda fmt=fmt: fleet.render(view, fmt))
        print(f"fleet: render {fmt:8}: {seconds * 1000:.0f} ms, peak {peak:.1f} MiB, {len(text) / 2**20:.2f} MiB out")


def bench_cap(findings: int) -> None:
    rng = random.Random(2)
    big = report("big-host", [finding(i, rng, long=True) for i in range(findings)])
    full, seconds, peak = measure(lambda: policy_report(big, limit=10**12))
    print(
        f"cap: {findings} findings uncapped: {wire_size(full) / 1024:.0f} KiB, "
        f"{len(full['results'])} results, {seconds * 1000:.0f} ms, peak {peak:.1f} MiB"
    )
    capped, seconds, peak = measure(lambda: policy_report(big))
    print(
        f"cap: {findings} findings capped at {MAX_BYTES // 1024} KiB: {wire_size(capped) / 1024:.0f} KiB, "
        f"{len(capped['results'])} results kept "
        f"(truncated={capped['metadata']['annotations']['nixdrift/truncated']}), "
        f"{seconds * 1000:.0f} ms, peak {peak:.1f} MiB"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hosts", type=int, default=10_000)
    p.add_argument("--findings", type=int, default=2_000)
    args = p.parse_args()
    bench_fleet(args.hosts)
    bench_cap(args.findings)


if __name__ == "__main__":
    main()
