"""Debouncing, bounded memory, and the fallbacks when inotify runs out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from daemon_harness import wait_for

from nixdrift.rootfs import Root
from nixdrift.service import routes
from nixdrift.service.routes import Action, Tree
from nixdrift.service.watch import Batch, Debouncer, Watcher


class Sink:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        with self.lock:
            self.batches.append(batch)

    def paths(self) -> list[str]:
        with self.lock:
            return [p for b in self.batches for p in b.paths]


def test_an_atomic_save_is_one_event(tmp_path: Path) -> None:
    sink = Sink()
    d = Debouncer(sink, delay=0.1)
    d.start()
    w = Watcher(Root.of(tmp_path), [Tree("/etc", True)], d, lambda why: None)
    (tmp_path / "etc").mkdir()
    w.start()
    tmp = tmp_path / "etc/.motd.swp"
    tmp.write_text("x")
    os.rename(tmp, tmp_path / "etc/motd")
    wait_for(lambda: str(tmp_path / "etc/motd") in sink.paths(), 5, "the save")
    assert sink.paths().count(str(tmp_path / "etc/motd")) == 1
    w.stop()
    d.stop()


def test_storm_memory_is_bounded_and_the_tree_rescanned() -> None:
    sink = Sink()
    d = Debouncer(sink, delay=0.05, max_wait=0.2, max_paths=100)
    d.start()
    for i in range(10_000):
        d.add(f"/x/etc/f{i}", "/etc")
    assert len(d._pending) <= 100
    wait_for(lambda: any(b.saturated for b in sink.batches), 5, "a saturated batch")
    assert {"/etc"} == {t for b in sink.batches for t in b.saturated}
    d.stop()


CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from daemon_harness import wait_for
from nixdrift.rootfs import Root
from nixdrift.service.routes import Tree
from nixdrift.service.watch import Debouncer, Watcher
Path("/proc/sys/user/max_inotify_watches").write_text("3\\n")  # this user namespace only
base = Path(sys.argv[1])
paths, lost = [], []
d = Debouncer(lambda b: paths.extend(b.paths), delay=0.05)
d.start()
w = Watcher(Root.of(base), [Tree("/etc", True)], d, lost.append, poll_interval=0.2)
w.start()  # the recursive add runs out of watches below /etc: inotify_add_watch fails with ENOSPC
w.maintain()
health = w.health()
(base / "etc/a/b/c/d/e/new.conf").write_text("x")
target = str(base / "etc/a/b/c/d/e/new.conf")
wait_for(lambda: target in paths, 10, "a polled change")
print(json.dumps({"polling": health.polling, "line": health.line(), "trees": dict(health.trees), "lost": lost}))
w.stop()
d.stop()
"""


def test_watch_limit_falls_back_to_polling(tmp_path: Path) -> None:
    """A real ENOSPC from inotify_add_watch: in a user namespace of its own (so this machine's
    limits are untouched) the watch limit is 3 and /etc holds 6 nested directories."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-U", "-r", "true"]).returncode != 0:
        pytest.skip("needs unprivileged user namespaces (unshare -U)")
    (tmp_path / "etc/a/b/c/d/e").mkdir(parents=True)
    argv = ["unshare", "-U", "-r", "--", sys.executable, "-c", CHILD, str(tmp_path), str(Path(__file__).parent)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["polling"] == ["/etc"] and "polling /etc" in got["line"] and got["trees"] == {"/etc": False}
    assert got["lost"] and "watch limit" in got["lost"][0]


@pytest.mark.parametrize(
    ("path", "cats"),
    [
        ("/etc/passwd", {"users"}),
        ("/etc/group", {"users"}),
        ("/etc/resolv.conf", {"network"}),  # the etc collector skips it: network owns it
        ("/etc/systemd/system/x.service", {"services", "service-config"}),
        ("/run/systemd/transient/x.service", {"services", "service-config"}),
        ("/etc/foo.conf", {"etc"}),
        ("/nix/var/nix/profiles/per-user/root/profile", {"packages"}),
    ],
)
def test_paths_route_to_their_categories(path: str, cats: set[str]) -> None:
    action, got = routes.route(path, None)
    assert action is Action.CAPTURE and {c.value for c in got} == cats


def test_generation_switch_rescans_everything() -> None:
    assert routes.route("/run/current-system", None)[0] is Action.SWITCH
    assert routes.route("/flake/flake.nix", Path("/flake"))[0] is Action.REEVALUATE


@pytest.mark.parametrize(
    ("rel", "action"),
    [
        ("flake.nix", Action.REEVALUATE),
        (".git/HEAD", Action.REEVALUATE),
        (".git/index", Action.REEVALUATE),
        (".git/refs/heads/main", Action.REEVALUATE),
        (".git/index.lock", Action.IGNORE),  # the daemon's own reads take it: reacting would loop
        (".git/objects/ab/cdef", Action.IGNORE),
        (".git/logs/HEAD", Action.IGNORE),
    ],
)
def test_only_meaningful_git_changes_reevaluate(rel: str, action: Action) -> None:
    flake = Path("/etc/nixos")
    assert routes.route(f"{flake}/{rel}", flake)[0] is action
