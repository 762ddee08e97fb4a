"""`systemctl set-property` drop-ins reach the daemon in realtime (issue 8, item 7).

`systemctl set-property --runtime` writes /run/systemd/system.control/<unit>.d/50-<Property>.conf,
and without --runtime /etc/systemd/system.control/... . Both directories are in the services row of
the category table, so the watcher observes them and the router sends their events to services.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon
from daemon_host import build_host

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]

# long intervals: only an inotify event can bring a change in within the test's deadlines
CONFIG = "alertThreshold: low\nintervals:\n  services: 3600\n  service-config: 3600\n  etc: 3600\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("system-control")
    host = build_host(tmp)
    (host.root / "run/systemd/system.control").mkdir(parents=True, exist_ok=True)
    (tmp / "config.yaml").write_text(CONFIG)
    d = Daemon(host=host, state=tmp / "state", config=tmp / "config.yaml")
    d.start()
    try:
        d.wait_ready()
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


def set_property(root: Path, directory: str, unit: str, conf: str, text: str) -> float:
    drop_ins = root / directory.lstrip("/") / f"{unit}.d"
    drop_ins.mkdir(parents=True, exist_ok=True)
    (drop_ins / conf).write_text(text)
    return time.monotonic()


def test_runtime_set_property_alerts_in_realtime(daemon: Daemon) -> None:
    daemon.wait_log(f"{daemon.host.root}/run/systemd/system.control with inotify")
    written = set_property(
        daemon.host.root, "/run/systemd/system.control", "foo.service", "50-x.conf", "[Service]\nMemoryMax=1G\n"
    )
    alert = daemon.wait_alert(event="new", id="service-config/foo.service/dropin/50-x.conf", timeout=15)
    assert time.monotonic() - written < 15
    assert alert.path == "/run/systemd/system.control/foo.service.d/50-x.conf"


def test_persistent_set_property_alerts_in_realtime(daemon: Daemon) -> None:
    set_property(daemon.host.root, "/etc/systemd/system.control", "bar.service", "50-CPUQuota.conf", "[Service]\n")
    alert = daemon.wait_alert(event="new", id="service-config/bar.service/dropin/50-CPUQuota.conf", timeout=15)
    assert alert.path == "/etc/systemd/system.control/bar.service.d/50-CPUQuota.conf"
