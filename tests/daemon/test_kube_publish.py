"""The daemon publishes its report to Kubernetes, and an API server that refuses never stops it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from daemon_harness import Daemon, wait_for
from daemon_host import build_host

from kube.conftest import FakeAPI, write_kubeconfig

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def test_publishes_after_the_api_comes_back_while_scanning_goes_on(tmp_path: Path) -> None:
    api = FakeAPI(script=[503, 503, 503])  # the API server refuses the first attempts
    api.start()
    daemon: Daemon | None = None
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        (tmp_path / "config.yaml").write_text(
            f"alertThreshold: low\nkubernetes: {{enable: true, kubeconfig: {kubeconfig}, namespace: fleet}}\n"
        )
        host = build_host(tmp_path)
        daemon = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml").start()
        daemon.wait_ready()  # the first scan completes whatever the API does
        (host.root / "etc" / "rogue.conf").write_text("by hand\n")
        daemon.wait_alert(id="etc/rogue.conf")  # realtime keeps working while the API refuses
        wait_for(lambda: api.objects, 60, "a report accepted after the refusals")
        assert len(api.patches()) >= 4  # three refused with 503, retried with backoff, then accepted
        assert api.objects[("fleet", "demo")]["scope"]["kind"] == "Host"
        wait_for(
            lambda: "etc/rogue.conf" in yaml.safe_dump(api.objects[("fleet", "demo")]), 60, "the new drift published"
        )
    finally:
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        api.stop()
