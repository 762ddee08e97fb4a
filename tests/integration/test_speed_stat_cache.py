"""The stat cache of /etc digests never changes a report: a scan with a warm, damaged, missing or
stale cache (a managed file edited with its size kept and its mtime set back) reports exactly what
a scan without any cache reports. Real nix builds the host; the files are really edited."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hostscan import scan
from nixdrift.capture.statcache import RACY_NS, DigestCache, file_for
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Report


def normal(report: Report) -> dict[str, Any]:
    """The report without the times a scan stamps on it."""
    doc = report.to_json()
    doc.pop("generated_at")
    for f in doc["findings"]:
        f.pop("first_seen")
        f.pop("last_seen")
    return doc


def ids(report: Report) -> set[str]:
    return {f.id for f in report.findings}


def settle(*paths: Path) -> None:
    """Wait until the files are older than the racy window, so that a scan may cache them."""
    newest = max(max(os.lstat(p).st_ctime_ns, os.lstat(p).st_mtime_ns) for p in paths)
    deadline = time.monotonic() + 30
    while time.time_ns() <= newest + RACY_NS:
        assert time.monotonic() < deadline, "the clock did not move past the files' times"
        time.sleep(0.1)


def test_a_warm_damaged_missing_or_stale_cache_gives_the_report_of_no_cache(
    demo_built: BuiltHost, tmp_path: Path
) -> None:
    built = demo_built
    built.add_etc_file("imperative.conf", "planted by hand\n")
    copy = built.root / "etc" / "sudoers.d" / "10-deploy"  # a managed copy: compared byte for byte
    planted = built.root / "etc" / "imperative.conf"
    settle(copy, planted)
    cache = tmp_path / "cache"
    cold = scan(built, cache)
    assert "etc/imperative.conf" in ids(cold)
    assert "etc/sudoers.d/10-deploy" not in ids(cold)
    stored = file_for(cache, built.root)
    recorded = DigestCache.load(stored).entries
    assert {str(copy), str(planted)} <= recorded.keys()  # what the next scan will not read again
    assert any(p.startswith("/nix/store/") for p in recorded)  # the copy's source, hashed once

    warm = scan(built, cache)
    assert normal(warm) == normal(cold)

    raw = bytearray(stored.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit
    stored.write_bytes(bytes(raw))
    assert normal(scan(built, cache)) == normal(cold)

    stored.unlink()
    assert normal(scan(built, cache)) == normal(cold)
    assert str(copy) in DigestCache.load(stored).entries  # cached again, with the file as it was

    # the racy case: a hand edit that keeps the size, and the mtime set back as it was
    before = os.lstat(copy)
    text = copy.read_text()
    edited = text.replace("alice", "mally")
    assert edited != text and len(edited) == len(text)
    copy.write_text(edited)
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.lstat(copy).st_size, os.lstat(copy).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    stale = scan(built, cache)
    truth = scan(built, tmp_path / "no-stat-cache-yet")
    assert normal(stale) == normal(truth)
    assert "etc/sudoers.d/10-deploy" in ids(stale)
