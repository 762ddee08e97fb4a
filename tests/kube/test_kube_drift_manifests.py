"""The declared side: plain manifest directories (multi-document files, `List` kinds), a
kustomization rendered by the real `kubectl kustomize`, kinds that are not compared, and the git
state of the directory (uncommitted manifests are drift)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kube.conftest import DATA
from kube.kubeapi import git
from kube.test_kube_drift import NIXDRIFT
from nixdrift.kube.manifests import ManifestError, load
from nixdrift.kube.model import ObjectKey


def test_a_directory_of_manifests_is_read_with_lists_and_documents(tmp_path: Path) -> None:
    shutil.copytree(DATA / "shop", tmp_path / "m")
    (tmp_path / "m" / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    declared = load(tmp_path / "m")
    keys = set(declared.objects)
    assert ObjectKey("NetworkPolicy", "shop", "default-deny") in keys  # from a List
    assert ObjectKey("ClusterRole", "", "shop-node-reader") in keys  # cluster-scoped: no namespace
    assert ObjectKey("Secret", "shop", "db-credentials") in keys
    assert len(keys) == 12
    assert declared.skipped == (f"{tmp_path / 'm' / 'namespace.yaml'}: Namespace/shop",)
    assert declared.source.git_problem == "not a git repository"


def test_an_object_declared_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: n}\n")
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: n}\n")
    with pytest.raises(ManifestError, match="declared twice"):
        load(tmp_path)


def test_uncommitted_and_untracked_manifests_are_listed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(DATA / "shop", repo / "k8s")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "shop")
    (repo / "k8s" / "worker.yaml").write_text((repo / "k8s" / "worker.yaml").read_text().replace("1.4.0", "1.5.0"))
    (repo / "k8s" / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n")
    (repo / "elsewhere.txt").write_text("not below the manifests\n")
    src = load(repo / "k8s").source
    assert (src.modified, src.untracked, src.dirty) == (("k8s/worker.yaml",), ("k8s/extra.yaml",), True)
    assert src.revision is not None and len(src.revision) == 40


KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop
labels:
  - pairs: {app.kubernetes.io/part-of: shop}
resources:
  - base.yaml
"""


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (Debian: kubernetes-client) is not installed")
def test_a_kustomization_is_rendered_with_kubectl(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    (tmp_path / "base.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\ndata: {a: b}\n")
    (tmp_path / "ignored.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-listed}\n")
    declared = load(tmp_path)
    assert declared.source.rendered_with == "kubectl kustomize"
    assert list(declared.objects) == [ObjectKey("ConfigMap", "shop", "flags")]  # namespace set by kustomize
    labels = declared.objects[ObjectKey("ConfigMap", "shop", "flags")].metadata["labels"]
    assert labels == {"app.kubernetes.io/part-of": "shop"}


def test_a_kustomization_without_kubectl_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "kustomization.yaml").write_text(KUSTOMIZATION)
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git",):
        found = shutil.which(tool)
        assert found is not None
        (bare / tool).symlink_to(found)
    proc = subprocess.run(
        [*NIXDRIFT, "kube", "--manifests", str(tmp_path / "m"), "--kubeconfig", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(bare)},
    )
    assert proc.returncode == 2
    assert "is a kustomization and rendering it needs kubectl" in proc.stderr
    assert proc.stdout == ""
