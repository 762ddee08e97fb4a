"""deploy/: the CRD copy matches the schema the tests validate against, the manifests parse, and the
per-host RBAC names exactly the report the host writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nixdrift.sinks.kube import object_name

TOP = Path(__file__).resolve().parents[2]
DEPLOY = TOP / "deploy"
DATA = Path(__file__).parent / "data"


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_host_rbac", DEPLOY / "generate-host-rbac.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def test_the_deployed_crd_is_the_schema_the_tests_use() -> None:
    (crd,) = _docs(DEPLOY / "crd" / "policyreports.wgpolicyk8s.io.yaml")
    assert crd["metadata"]["name"] == "policyreports.wgpolicyk8s.io"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    assert version["served"] and version["storage"]
    saved = json.loads((DATA / "policyreport-v1alpha2.openapi.json").read_text())
    assert version["schema"]["openAPIV3Schema"] == saved
    enum = saved["properties"]["results"]["items"]["properties"]["severity"]["enum"]
    assert sorted(enum) == ["critical", "high", "info", "low", "medium"]


def test_kustomization_lists_files_that_exist_and_parse() -> None:
    (kustomization,) = _docs(DEPLOY / "kustomization.yaml")
    kinds = []
    for resource in kustomization["resources"]:
        kinds += [d["kind"] for d in _docs(DEPLOY / resource)]
    assert sorted(kinds) == ["ClusterRole"] * 2 + ["CustomResourceDefinition"] * 2 + ["Namespace"]
    (reader,) = _docs(DEPLOY / "rbac" / "fleet-reader.yaml")
    assert reader["rules"] == [
        {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["openreports.io"], "resources": ["reports"], "verbs": ["get", "list", "watch"]},
    ]


def test_each_host_may_write_only_its_own_report() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "generate-host-rbac.py"), "--namespace", "fleet", "web1", "Web_02"],
        capture_output=True,
        text=True,
        check=True,
    )
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "Secret"] * 2
    for host, (account, role, binding, secret) in zip(["web1", "Web_02"], [docs[:4], docs[4:]], strict=True):
        name = object_name(host)
        assert all(d["metadata"]["namespace"] == "fleet" for d in (account, role, binding, secret))
        rule, openreport = role["rules"]
        assert rule["resourceNames"] == [name]
        assert rule["resources"] == ["policyreports"] and "patch" in rule["verbs"]
        assert "list" not in rule["verbs"]  # never another host's report
        assert (openreport["apiGroups"], openreport["resources"]) == (["openreports.io"], ["reports"])
        assert openreport["resourceNames"] == [name] and "list" not in openreport["verbs"]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "fleet"}
        ]
        assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == account["metadata"]["name"]
        assert account["metadata"]["annotations"]["nixdrift/host"] == host


@given(st.text(min_size=1, max_size=100))
def test_the_generator_names_reports_as_the_daemon_does(host: str) -> None:
    assert GENERATOR.object_name(host) == object_name(host)


def test_the_make_kubeconfig_script_is_valid_shell() -> None:
    subprocess.run(["sh", "-n", str(DEPLOY / "make-kubeconfig.sh")], check=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("results", 0, "severity"), "urgent"),
        (("results", 0, "result"), "failed"),
        (("results", 0, "surprise"), "pruned by the API server"),
        (("scope", "host"), "not an ObjectReference field"),
        (("summary", "fail"), "3"),
        (("results", 0, "timestamp"), {"seconds": 1}),
    ],
)
def test_the_schema_check_catches_what_the_api_server_would_refuse_or_drop(
    path: tuple[Any, ...], value: Any, validate: Callable[[Any], None]
) -> None:
    obj: dict[str, Any] = {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {"name": "web1", "namespace": "nixdrift"},
        "scope": {"kind": "Host", "name": "web1"},
        "summary": {"fail": 1},
        "results": [
            {"policy": "firewall", "result": "fail", "severity": "high", "timestamp": {"seconds": 1, "nanos": 0}}
        ],
    }
    validate(obj)
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(AssertionError):
        validate(obj)
