"""The daemon's realtime path on a system.etc.overlay host (issue 10): /etc is a real overlayfs
mounted in this test's private mount namespace (the daemon, a child, sees it too), watched with
real inotify; a file written into /etc lands in the upper directory and alerts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, wait_for
from daemon_host import Host

from nixdrift.demo.hostbuilder import HostTree

pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        shutil.which("nix") is None or os.geteuid() != 0 or shutil.which("mount") is None,
        reason="needs nix, root and mount (an overlayfs in a private mount namespace)",
    ),
]


@pytest.fixture
def overlay_daemon(tmp_path: Path) -> Iterator[Daemon]:
    tree = HostTree(tmp_path / "host", name="demo", etc="overlay", accounts="userborn", init="nixos-init")
    tree.with_user("alice", groups=["video"])
    tree.with_etc_file("issue", "Welcome to NixOS\n")
    tree.with_etc_copy("motd", "# motd from the flake\n", mode="0644")
    built = tree.build()
    (tmp_path / "config.yaml").write_text("alertThreshold: low\n")
    with built.mounted_etc():
        d = Daemon(host=Host(built), state=tmp_path / "state", config=tmp_path / "config.yaml")
        try:
            d.start(watchdog_usec=None)
            d.wait_ready()
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def test_write_into_overlay_etc_alerts_and_lands_in_the_upper_dir(overlay_daemon: Daemon) -> None:
    root = overlay_daemon.host.root
    assert not overlay_daemon.alerts(), "a clean overlay host alerted at start"
    (root / "etc" / "imperative.conf").write_text("x=1\n")
    alert = overlay_daemon.wait_alert(event="new", path="/etc/imperative.conf")
    assert alert.id == "etc/imperative.conf"
    # the write went through the overlay: the upper directory holds it, the lower layer does not
    assert (root / ".rw-etc" / "upper" / "imperative.conf").read_text() == "x=1\n"
    assert not (root / "run" / "nixos-etc-metadata" / "imperative.conf").exists()


def test_deleting_a_managed_file_on_the_overlay_alerts(overlay_daemon: Daemon) -> None:
    root = overlay_daemon.host.root
    (root / "etc" / "issue").unlink()
    overlay_daemon.wait_alert(event="new", path="/etc/issue")
    whiteout = root / ".rw-etc" / "upper" / "issue"
    wait_for(lambda: whiteout.is_char_device(), 5, "the whiteout in the upper directory")
