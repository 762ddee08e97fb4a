"""The NixOS module, evaluated with real Nix against a stand-in for lib and the module system."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nixdrift import config as config_mod
from nixdrift.models import Category, Severity

HERE = Path(__file__).resolve().parent
PACKAGE = "/nix/store/00000000000000000000000000000000-nixdrift-0.1.0"

pytestmark = pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix is not installed")


def nix_value(value: Any) -> str:
    """A Nix expression for a JSON-like Python value."""
    return f"builtins.fromJSON {json.dumps(json.dumps(value))}"


def evaluate(user: dict[str, Any], host: str = "web1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", str(HERE / "eval-module.nix"),
            "--arg", "user", nix_value(user), "--argstr", "hostName", host,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def config_of(user: dict[str, Any], host: str = "web1") -> dict[str, Any]:
    proc = evaluate({"enable": True, "package": PACKAGE, **user}, host)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_disabled_module_sets_nothing() -> None:
    proc = evaluate({"package": PACKAGE})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


def test_service_is_a_hardened_notify_daemon() -> None:
    svc = config_of({})["systemd"]["services"]["nixdrift"]
    sc = svc["serviceConfig"]
    assert svc["wantedBy"] == ["multi-user.target"]
    assert sc["Type"] == "notify"
    assert sc["ExecStart"].startswith(f"{PACKAGE}/bin/nixdrift daemon ")
    assert "--config /etc/nixdrift/config.yaml" in sc["ExecStart"]
    assert sc["WatchdogSec"] and sc["Restart"] == "on-failure"
    assert sc["StateDirectory"] == "nixdrift"
    for key in ("NoNewPrivileges", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert sc[key] is True, key
    assert sc["ProtectSystem"] == "strict"
    assert sc["ReadWritePaths"] == ["/var/lib/nixdrift", "-/var/lib/nixdrift/reports"]
    assert sorted(sc["CapabilityBoundingSet"]) == ["CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"]


def test_report_timer_is_persistent_and_follows_schedule() -> None:
    cfg = config_of({"schedule": "*-*-* 06:00:00"})
    timer = cfg["systemd"]["timers"]["nixdrift-report"]
    assert timer["timerConfig"]["OnCalendar"] == "*-*-* 06:00:00"
    assert timer["timerConfig"]["Persistent"] is True
    assert timer["wantedBy"] == ["timers.target"]
    report = cfg["systemd"]["services"]["nixdrift-report"]["serviceConfig"]
    assert report["Type"] == "oneshot"
    assert "nixdrift report" in report["ExecStart"] and "--out /var/lib/nixdrift/reports" in report["ExecStart"]
    assert report["SuccessExitStatus"] == "0 1"


def test_package_is_on_the_system_path_and_report_dir_exists() -> None:
    cfg = config_of({"reportDir": "/srv/drift"})
    assert cfg["environment"]["systemPackages"] == [PACKAGE]
    assert cfg["systemd"]["tmpfiles"]["rules"] == ["d /srv/drift 0750 root root -"]


def test_rendered_config_is_read_by_the_daemon_as_set() -> None:
    cfg = config_of(
        {
            "flake": "/srv/infra",
            "alertThreshold": "high",
            "exceptions": ["etc/etc/motd"],
            "intervals": {"etc": 60},
            "autoRemediate": True,
            "prometheus": {"textfileDir": "/var/lib/node-exporter"},
            "kubernetes": {"enable": True, "namespace": "fleet", "kubeconfig": "/run/keys/kube", "heartbeat": 600},
            "settings": {"severity": {"repo/*": "low"}},
        },
        host="db1",
    )
    path = Path(cfg["environment"]["etc"]["nixdrift/config.yaml"]["source"])
    loaded = config_mod.load(path)
    assert loaded.flake == "/srv/infra"
    assert loaded.host_name == "db1"
    assert loaded.alert_threshold is Severity.HIGH
    assert loaded.exceptions == ("etc/etc/motd",)
    assert loaded.intervals[Category.ETC] == 60
    assert loaded.intervals[Category.PACKAGES] == config_mod.DEFAULT_INTERVALS[Category.PACKAGES]
    assert loaded.auto_remediate is True
    assert loaded.prometheus_textfile_dir == "/var/lib/node-exporter"
    assert loaded.kubernetes.enable and loaded.kubernetes.namespace == "fleet"
    assert loaded.kubernetes.kubeconfig == "/run/keys/kube"
    assert loaded.kubernetes.heartbeat == 600
    assert loaded.severity == {"repo/*": Severity.LOW}
    sc = cfg["systemd"]["services"]["nixdrift"]["serviceConfig"]
    assert "-/var/lib/node-exporter" in sc["ReadWritePaths"]
    assert "/etc" in sc["ReadWritePaths"]  # auto-remediation writes where the drift is


def test_bad_threshold_is_rejected() -> None:
    proc = evaluate({"enable": True, "package": PACKAGE, "alertThreshold": "urgent"})
    assert proc.returncode != 0
    assert "alertThreshold" in proc.stderr


def test_missing_host_in_flake_gives_a_helpful_assertion() -> None:
    outputs = {"nixosConfigurations": {"web2": {}, "db1": {}}}
    proc = evaluate({"enable": True, "package": PACKAGE, "flakeOutputs": outputs})
    assert proc.returncode != 0
    assert "no nixosConfigurations.web1" in proc.stderr and "db1, web2" in proc.stderr
    ok = config_of({"flakeOutputs": {"nixosConfigurations": {"web1": {}}}})
    assert ok["systemd"]["services"]["nixdrift"]


def test_kube_checks_and_report_format_reach_the_daemon_as_set() -> None:
    cfg = config_of(
        {
            "reportFormat": "both",
            "kubernetes": {"enable": True},
            "kube": {
                "enable": True,
                "manifests": "/srv/infra/k8s",
                "kubeconfig": "/run/keys/cluster",
                "namespace": "shop",
                "cluster": "prod",
                "secretMaxAgeDays": 30,
                "intervals": {"kube-rbac": 60, "full": 3600},
                "autoRemediate": True,
            },
        }
    )
    loaded = config_mod.load(Path(cfg["environment"]["etc"]["nixdrift/config.yaml"]["source"]))
    assert loaded.report_format == "both" and loaded.kubernetes.report_format == "both"
    kube = loaded.kube
    assert kube.enable and kube.manifests == "/srv/infra/k8s" and kube.kubeconfig == "/run/keys/cluster"
    assert (kube.namespace, kube.cluster, kube.secret_max_age_days) == ("shop", "prod", 30)
    assert kube.intervals == {**config_mod.KUBE_DEFAULT_INTERVALS, "kube-rbac": 60, "full": 3600}
    assert kube.auto_remediate is True
    path = cfg["systemd"]["services"]["nixdrift"]["path"]
    assert any(p.endswith("-kubectl") for p in path)  # manifests that are a kustomization are rendered


def test_kube_checks_default_off_and_report_format_default() -> None:
    cfg = config_of({})
    loaded = config_mod.load(Path(cfg["environment"]["etc"]["nixdrift/config.yaml"]["source"]))
    assert loaded.kube.enable is False
    assert loaded.report_format == "policyreport"
    assert not any(p.endswith("-kubectl") for p in cfg["systemd"]["services"]["nixdrift"]["path"])


def test_kube_checks_need_manifests_and_a_known_report_format() -> None:
    proc = evaluate({"enable": True, "package": PACKAGE, "kube": {"enable": True}})
    assert proc.returncode != 0
    assert "kube.manifests is not" in proc.stderr
    proc = evaluate({"enable": True, "package": PACKAGE, "reportFormat": "wgpolicy"})
    assert proc.returncode != 0
    assert "reportFormat" in proc.stderr
