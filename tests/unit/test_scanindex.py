"""The scan index records what a traced scan read, and says an answer still holds only while every
one of those inputs is exactly as it was: real files, real directories, real processes and sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nixdrift import scanindex
from nixdrift.capture import statcache


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files made by a test are seconds old: most tests look at what is recorded, not at the window
    (one test below puts it back)."""
    monkeypatch.setattr(scanindex, "RACY_NS", -(10**12))
    yield


def answer_of(trace: scanindex.Trace, where: Path) -> tuple[Path, dict[str, object]]:
    """An answer directory holding the trace's manifest, as `answer.publish` lays it out."""
    manifest = trace.manifest()
    assert manifest is not None, trace.taints
    where.mkdir(exist_ok=True)
    (where / "answer-t.inputs").write_bytes(manifest)
    meta: dict[str, object] = {
        "token": "t",
        "sizes": {"inputs": len(manifest)},
        "validity": {"kind": "inputs", "format": scanindex.FORMAT, "scanned_ns": trace.started_ns},
    }
    return where, meta


def traced(read: Callable[[], object]) -> scanindex.Trace:
    with scanindex.tracing() as trace:
        read()
    return trace


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "etc"
    (top / "sub").mkdir(parents=True)
    for name in ("a.conf", "b.conf"):
        (top / name).write_text(f"{name}\n")
    (top / "sub" / "c.conf").write_text("c\n")
    return top


def test_an_unchanged_listing_holds_and_every_change_to_its_entries_is_seen(tree: Path, tmp_path: Path) -> None:
    def changes() -> Iterator[tuple[str, Callable[[], object]]]:
        yield "a new file", lambda: (tree / "new.conf").write_text("x\n")
        yield "a chmod", lambda: os.chmod(tree / "a.conf", 0o600)
        yield "a chown", lambda: os.chown(tree / "a.conf", 1234, 1234)
        yield "a same-size rewrite with its mtime set back", lambda: _rewrite_keeping_mtime(tree / "b.conf")
        yield "a file replaced by a link", lambda: _replace_with_link(tree / "b.conf")
        yield "a removed file", lambda: (tree / "a.conf").unlink()

    for n, (what, change) in enumerate(changes()):
        trace = traced(lambda: os.listdir(tree))
        directory, meta = answer_of(trace, tmp_path / f"answer{n}")
        assert scanindex.still_valid(directory, meta), f"{what}: the unchanged listing does not hold"
        change()
        assert not scanindex.still_valid(directory, meta), f"{what} was not seen"


def _rewrite_keeping_mtime(path: Path) -> None:
    before = os.lstat(path)
    path.write_text(path.read_text().upper())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.lstat(path).st_size, os.lstat(path).st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _replace_with_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/static/b.conf")


def test_a_file_read_a_path_found_absent_and_a_link_followed_are_inputs(tree: Path, tmp_path: Path) -> None:
    target = tree / "sub" / "c.conf"
    link = tmp_path / "link"
    link.symlink_to(target)
    absent = tree / "nothere.conf"

    def read() -> None:
        (tree / "a.conf").read_text()
        absent.exists()
        link.is_file()

    assert not absent.exists()
    changes: list[Callable[[], object]] = [
        lambda: (tree / "a.conf").write_text("edited\n"),
        lambda: absent.write_text("now here\n"),
        lambda: target.write_text("the file behind the link, edited\n"),
    ]
    for n, change in enumerate(changes):
        directory, meta = answer_of(traced(read), tmp_path / f"answer{n}")
        assert scanindex.still_valid(directory, meta)
        change()
        assert not scanindex.still_valid(directory, meta), f"change {n} was not seen"


def test_a_directory_only_stat_ed_is_recorded_by_what_it_is_not_by_its_times(tree: Path, tmp_path: Path) -> None:
    directory, meta = answer_of(traced(lambda: (tree / "sub").is_dir()), tmp_path / "answer")
    (tree / "sub" / "d.conf").write_text("d\n")  # moves sub's mtime: the scan did not list it
    assert scanindex.still_valid(directory, meta)
    (tree / "sub" / "d.conf").unlink()
    (tree / "sub" / "c.conf").unlink()
    (tree / "sub").rmdir()
    (tree / "sub").write_text("a file now\n")
    assert not scanindex.still_valid(directory, meta)


def test_a_store_path_is_recorded_by_its_top_only(tmp_path: Path) -> None:
    store = Path("/nix/store")
    some = next((p for p in store.iterdir() if p.is_dir() and not p.is_symlink()), None) if store.is_dir() else None
    if some is None:
        pytest.skip("no store path here")
    inside = next(some.rglob("*"), some)
    trace = traced(lambda: os.lstat(inside))
    manifest = trace.manifest()
    assert manifest is not None
    doc = json.loads(manifest.partition(b"\n")[2])
    assert doc["store"] == [[str(some), True]]
    assert doc["files"] == [] and doc["dirs"] == []


@pytest.mark.parametrize(
    ("what", "act"),
    [
        ("a process", lambda _p: subprocess.run(["true"], check=True)),
        ("a socket", lambda p: _connect(p)),
        ("a file of the running kernel", lambda _p: Path("/proc/self/status").read_bytes()),
    ],
)
def test_what_a_stat_cannot_vouch_for_makes_the_scan_unindexable(
    what: str, act: Callable[[Path], object], tmp_path: Path
) -> None:
    trace = traced(lambda: act(tmp_path))
    assert trace.manifest() is None, f"{what}: indexable"
    assert trace.taints


def _connect(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "bus"))
    server.listen()
    with server, socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "bus"))


def test_a_process_whose_inputs_are_recorded_is_vouched_for(tree: Path, tmp_path: Path) -> None:
    def read() -> None:
        with scanindex.vouch_processes(trees=[str(tree)]):
            subprocess.run(["ls", "-R", str(tree)], check=True, capture_output=True)

    directory, meta = answer_of(traced(read), tmp_path / "answer")
    assert scanindex.still_valid(directory, meta)
    (tree / "sub" / "c.conf").write_text("what ls saw is not what is there now\n")  # two levels down
    assert not scanindex.still_valid(directory, meta)


def test_a_file_changed_within_the_racy_window_makes_the_scan_unindexable(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanindex, "RACY_NS", statcache.RACY_NS)
    (tree / "a.conf").write_text("just now\n")
    trace = traced(lambda: (tree / "a.conf").read_text())
    assert trace.manifest() is None
    assert "changed within" in trace.taints[0]


def test_the_racy_window_is_the_stat_cache_s() -> None:
    assert scanindex.__dict__["RACY_NS"] != statcache.RACY_NS  # monkeypatched here: the module's own is below
    source = Path(scanindex.__file__).read_text()
    assert f"RACY_NS = {statcache.RACY_NS:_}" in source


def test_an_old_answer_or_one_from_the_future_does_not_hold(tree: Path, tmp_path: Path) -> None:
    trace = traced(lambda: (tree / "a.conf").read_text())
    directory, meta = answer_of(trace, tmp_path / "answer")
    scanned = trace.started_ns
    assert scanindex.still_valid(directory, meta, lambda: scanned + scanindex.MAX_AGE_NS - 1)
    assert not scanindex.still_valid(directory, meta, lambda: scanned + scanindex.MAX_AGE_NS)
    assert not scanindex.still_valid(directory, meta, lambda: scanned - 1)  # the clock went back


def test_a_damaged_cut_short_or_foreign_manifest_does_not_hold(tree: Path, tmp_path: Path) -> None:
    trace = traced(lambda: (os.listdir(tree), (tree / "absent-a").exists()))
    directory, meta = answer_of(trace, tmp_path / "answer")
    stored = directory / "answer-t.inputs"
    good = stored.read_bytes()
    assert scanindex.still_valid(directory, meta)
    for bad in (
        good.replace(b"absent-a", b"absent-b"),  # still a path that is absent: only the checksum tells
        good[: len(good) // 2] + bytes([good[len(good) // 2] ^ 0x01]) + good[len(good) // 2 + 1 :],
        good[:-10],
        good.replace(scanindex.FORMAT.encode(), b"nixdrift-scanindex 0"),
        b"",
    ):
        stored.write_bytes(bad)
        assert not scanindex.still_valid(directory, {**meta, "sizes": {"inputs": len(bad)}})
    stored.write_bytes(good)
    assert not scanindex.still_valid(directory, {**meta, "validity": {"kind": "daemon"}})


def test_tracing_puts_os_back_as_it_was() -> None:
    before = (os.stat, os.lstat, os.readlink)
    with scanindex.tracing():
        assert os.stat is not before[0]
        with pytest.raises(RuntimeError), scanindex.tracing():
            pass
    assert (os.stat, os.lstat, os.readlink) == before


def test_an_answer_that_read_a_relative_path_holds_in_its_own_directory_only(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.conf").write_text("another flake's file\n")
    monkeypatch.chdir(tree)
    directory, meta = answer_of(traced(lambda: Path("a.conf").read_text()), tmp_path / "answer")
    assert scanindex.still_valid(directory, meta)
    monkeypatch.chdir(other)  # `--flake .` here is another flake
    assert not scanindex.still_valid(directory, meta)


def test_a_module_imported_during_the_scan_is_no_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_module_of_the_scan.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with scanindex.tracing() as trace:
        __import__("lazy_module_of_the_scan")
    assert not any(p.startswith(str(tmp_path)) for p in (*trace.followed, *trace.listed)), trace.followed


def test_a_store_path_removed_is_seen_and_one_added_beside_it_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "root" / "nix" / "store"
    package = store / "0000000000000000000000000000000a-pkg"
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "tool").write_text("#!/bin/sh\n")
    trace = traced(lambda: (package / "bin" / "tool").read_text())
    directory, meta = answer_of(trace, tmp_path / "answer")
    assert scanindex.still_valid(directory, meta)
    (store / "0000000000000000000000000000000b-other").mkdir()  # a build: the store directory changed
    assert scanindex.still_valid(directory, meta)
    (package / "bin" / "tool").unlink()
    (package / "bin").rmdir()
    package.rmdir()  # garbage-collected
    assert not scanindex.still_valid(directory, meta)


def test_a_rename_or_a_swap_of_two_names_is_seen(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing's digest holds its entries' stats, not their names: the directory's own mtime, which
    every rename moves, is what tells. With the real racy window, so the rename is a later tick."""
    monkeypatch.setattr(scanindex, "RACY_NS", statcache.RACY_NS)
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in map(os.lstat, [tree, *tree.iterdir()]))
    deadline = time.monotonic() + 30
    while time.time_ns() <= newest + statcache.RACY_NS:
        assert time.monotonic() < deadline, "the clock did not move"
        time.sleep(0.05)

    def swap() -> None:
        os.rename(tree / "b.conf", tree / "t")
        os.rename(tree / "renamed.conf", tree / "b.conf")
        os.rename(tree / "t", tree / "renamed.conf")

    changes: list[Callable[[], object]] = [lambda: os.rename(tree / "a.conf", tree / "renamed.conf"), swap]
    for n, change in enumerate(changes):
        directory, meta = answer_of(traced(lambda: os.listdir(tree)), tmp_path / f"answer{n}")
        assert scanindex.still_valid(directory, meta)
        change()
        assert not scanindex.still_valid(directory, meta), f"change {n} was not seen"
        newest = time.time_ns()
        while time.time_ns() <= newest + statcache.RACY_NS:  # the next trace must not race with this change
            assert time.monotonic() < deadline + 30, "the clock did not move"
            time.sleep(0.05)
