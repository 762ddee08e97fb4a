"""The stat cache of file digests (capture/statcache.py): an unchanged file is read once, any change
a stat can show is read again, a change it cannot show (the racy case) is never trusted, and a
damaged, missing or unwritable cache file only costs time."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from nixdrift.capture import statcache
from nixdrift.capture.statcache import RACY_NS, DigestCache

LATER = RACY_NS * 5  # a clock this far ahead of the files' times: nothing is racy


class Reader:
    """The real hasher, counting the files it opened."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, path: Path) -> str | None:
        self.read.append(path.name)
        return hashlib.sha256(path.read_bytes()).hexdigest()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def settled_clock() -> int:
    return time.time_ns() + LATER


def digest(cache: DigestCache, path: Path, reader: Reader) -> str | None:
    return cache.sha256(path, reader, os.lstat(path))


def test_an_unchanged_file_is_read_once_also_by_the_next_scan(tmp_path: Path) -> None:
    f = tmp_path / "a.conf"
    f.write_text("one\n")
    store = tmp_path / "cache" / "digests.json"
    reader = Reader()
    cache = DigestCache(file=store, clock=settled_clock)
    assert digest(cache, f, reader) == sha("one\n")
    assert digest(cache, f, reader) == sha("one\n")
    assert cache.save()
    again = DigestCache.load(store, clock=settled_clock)
    assert digest(again, f, reader) == sha("one\n")
    assert reader.read == ["a.conf"]
    assert (again.hits, again.misses) == (1, 0)


def test_a_change_with_the_same_size_and_the_mtime_set_back_is_read_again(tmp_path: Path) -> None:
    f = tmp_path / "sudoers"
    f.write_text("alice ALL\n")
    before = os.lstat(f)
    reader = Reader()
    cache = DigestCache(file=tmp_path / "c.json", clock=settled_clock)
    assert digest(cache, f, reader) == sha("alice ALL\n")
    f.write_text("mally ALL\n")  # same size
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime: only ctime tells
    assert os.lstat(f).st_mtime_ns == before.st_mtime_ns
    assert digest(cache, f, reader) == sha("mally ALL\n")
    assert reader.read == ["sudoers", "sudoers"]


def test_a_file_changed_within_the_racy_window_is_never_trusted(tmp_path: Path) -> None:
    """A second write in the same clock tick leaves the whole stat as it was: the test replays that
    by asking again with the very stat of the first version. For a file that had settled when it was
    read, the cache answers (that is what it is for); a file changed just before it was read is read
    again, and is not written to the cache file either."""
    f = tmp_path / "motd"
    store = tmp_path / "c.json"
    for clock, trusted in ((settled_clock, True), (time.time_ns, False)):
        f.write_text("first\n")
        st = os.lstat(f)
        cache = DigestCache(file=store, clock=clock)
        assert cache.sha256(f, Reader(), st) == sha("first\n")
        f.write_text("other\n")  # same size; in the same tick, the same stat
        answer = cache.sha256(f, Reader(), st)
        assert answer == (sha("first\n") if trusted else sha("other\n"))
        cache.save()
        assert (str(f) in DigestCache.load(store).entries) is trusted


def test_racy_is_judged_against_the_time_the_file_was_read() -> None:
    now = 1_700_000_000 * 10**9
    old = statcache.Stamp(1, 2, 3, now - RACY_NS - 1, now - RACY_NS - 1, 0o100644)
    assert not old.racy(now)
    assert old.__class__(1, 2, 3, now - RACY_NS - 1, now - 5, 0o100644).racy(now)  # ctime: just now
    assert old.__class__(1, 2, 3, now, now - RACY_NS - 1, 0o100644).racy(now)  # mtime set ahead


@pytest.mark.parametrize(
    "damage",
    ["flip a digest byte", "cut short", "not a cache", "valid checksum, wrong shape", "empty"],
)
def test_a_damaged_cache_file_is_thrown_away_whole(tmp_path: Path, damage: str) -> None:
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    store = tmp_path / "c.json"
    cache = DigestCache(file=store, clock=settled_clock)
    digest(cache, f, Reader())
    assert cache.save()
    raw = store.read_bytes()
    good = sha("127.0.0.1 localhost\n").encode()
    assert good in raw
    match damage:
        case "flip a digest byte":  # still a well-formed digest: only the checksum catches it
            bad = raw.replace(good, sha("something else").encode())
        case "cut short":
            bad = raw[: len(raw) - 20]
        case "not a cache":
            bad = b"\x00\xff garbage\n{"
        case "valid checksum, wrong shape":
            body = b'{"/etc/hosts": [1, 2, "three"]}'
            bad = f"{statcache.MAGIC} {hashlib.sha256(body).hexdigest()}\n".encode() + body
        case _:
            bad = b""
    store.write_bytes(bad)
    reader = Reader()
    loaded = DigestCache.load(store, clock=settled_clock)
    assert loaded.entries == {}
    assert digest(loaded, f, reader) == sha("127.0.0.1 localhost\n")
    assert reader.read == ["hosts"]
    assert loaded.save()  # and it is rewritten whole
    assert DigestCache.load(store).entries.keys() == {str(f)}


def test_the_cache_file_is_replaced_atomically_private_and_only_when_something_changed(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    store = tmp_path / "state" / "digests.json"
    cache = DigestCache(file=store, clock=settled_clock)
    digest(cache, f, Reader())
    assert cache.save()
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert sorted(p.name for p in store.parent.iterdir()) == ["digests.json"]  # no temporary left
    written = store.stat().st_mtime_ns, store.stat().st_ino
    digest(cache, f, Reader())
    assert not cache.save()  # all hits: nothing to write
    assert (store.stat().st_mtime_ns, store.stat().st_ino) == written
    assert cache.current()


def test_files_no_scan_saw_are_dropped_from_the_cache(tmp_path: Path) -> None:
    keep, gone = tmp_path / "keep", tmp_path / "gone"
    keep.write_text("k")
    gone.write_text("g")
    store = tmp_path / "c.json"
    cache = DigestCache(file=store, clock=settled_clock)
    digest(cache, keep, Reader())
    digest(cache, gone, Reader())
    cache.save()
    gone.unlink()
    cache = DigestCache.load(store, clock=settled_clock)
    digest(cache, keep, Reader())
    assert cache.save()
    assert DigestCache.load(store).entries.keys() == {str(keep)}


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    f = tmp_path / "a"
    f.write_text("x")
    cache = DigestCache(file=blocker / "digests.json", clock=settled_clock)
    assert digest(cache, f, Reader()) == sha("x")
    assert not cache.save()


def test_a_file_replaced_between_the_stat_and_the_read_is_not_recorded(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("old")
    st = os.lstat(f)
    (tmp_path / "new").write_text("new")
    os.replace(tmp_path / "new", f)  # another inode now
    cache = DigestCache(file=tmp_path / "c.json", clock=settled_clock)
    assert cache.sha256(f, Reader(), st) == sha("new")
    assert str(f) not in cache.entries


def test_without_a_session_every_file_is_read(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    reader = Reader()
    assert statcache.active() is None
    statcache.sha256(f, reader, os.lstat(f))
    statcache.sha256(f, reader, os.lstat(f))
    assert reader.read == ["a", "a"]


def test_a_session_keeps_one_file_per_root_and_saves_it(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    cache_dir = tmp_path / "cache"
    with statcache.session(cache_dir, Path("/srv/snapshot")) as cache:
        assert cache is statcache.active()
        statcache.sha256(f, Reader(), os.lstat(f))
    assert statcache.active() is None
    written = statcache.file_for(cache_dir, Path("/srv/snapshot"))
    assert written != statcache.file_for(cache_dir, Path("/"))
    assert written.exists()


def test_a_capture_that_looks_nothing_up_keeps_the_cache(tmp_path: Path) -> None:
    """The daemon captures one category at a time: a firewall scan must not empty the /etc entries."""
    f = tmp_path / "a"
    f.write_text("x")
    store = tmp_path / "c.json"
    cache = DigestCache(file=store, clock=settled_clock)
    digest(cache, f, Reader())
    assert cache.save()
    assert not cache.save()  # a session of another category: nothing looked up
    reader = Reader()
    assert digest(DigestCache.load(store, clock=settled_clock), f, reader) == sha("x")
    assert reader.read == []
