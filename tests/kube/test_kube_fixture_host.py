"""A drifted fixture host (real nix, real files) published as Kubernetes expects it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nixdrift import pipeline
from nixdrift.config import KubernetesConfig
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import DRIFTS
from nixdrift.models import Report
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import Root
from nixdrift.sinks.kube import KubeSink

pytestmark = pytest.mark.nix


@pytest.fixture
def drifted(demo_built: BuiltHost) -> BuiltHost:
    for drift in DRIFTS:
        drift.plant(demo_built)
    return demo_built


def scan(built: BuiltHost) -> Report:
    opts = ScanOptions(flake=str(built.flake), host=built.name, root=Root.of(built.root), cache_dir=None)
    return pipeline.scan(opts)


@pytest.fixture
def sink(kubeconfig: Path, tmp_path: Path) -> Iterator[KubeSink]:
    cfg = KubernetesConfig(enable=True, kubeconfig=str(kubeconfig), namespace="nixdrift")
    made = KubeSink(cfg, tmp_path / "state", "0.1.0", request_timeout=2.0, backoff_initial=0.1, backoff_max=0.5)
    yield made
    made.close(timeout=2)


def test_a_drifted_host_reaches_the_api_server_as_a_valid_policy_report(
    drifted: BuiltHost,
    sink: KubeSink,
    fake_api: Any,
    validate: Callable[[Any], None],
    poll: Callable[..., Any],
) -> None:
    report = scan(drifted)
    assert len(report.findings) >= len(DRIFTS)
    sink.submit(report, changed=True)
    (req,) = poll(fake_api.patches, what="the PATCH")
    assert req.path == f"/apis/wgpolicyk8s.io/v1alpha2/namespaces/nixdrift/policyreports/{drifted.name}"
    assert req.query["fieldManager"] == ["nixdrift"] and req.query["force"] == ["true"]
    assert req.headers["content-type"] == "application/apply-patch+yaml"
    sent = yaml.safe_load(req.body)
    validate(sent)
    assert sent["scope"] == {"kind": "Host", "name": drifted.name}
    assert {r["rule"] for r in sent["results"]} == {f.id for f in report.findings}
    assert {r["policy"] for r in sent["results"]} >= {d.category for d in DRIFTS}
    fails = sum(1 for f in report.findings if f.severity >= report.threshold)
    assert sent["summary"]["fail"] == fails
    assert sent["summary"]["warn"] == len(report.findings) - fails


def test_check_format_policyreport_prints_the_object_that_would_be_applied(
    drifted: BuiltHost, validate: Callable[[Any], None]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nixdrift", "check", "--flake", str(drifted.flake), "--host", drifted.name,
         "--root", str(drifted.root), "--no-cache", "--format", "policyreport"],
        capture_output=True, text=True, env={**os.environ, "NIXDRIFT_QUIET": "1"}, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    obj = yaml.safe_load(proc.stdout)
    validate(obj)
    assert obj["kind"] == "PolicyReport" and obj["metadata"]["name"] == drifted.name
    assert "$6$" not in proc.stdout and json.dumps(obj).count("wheel") >= 1
