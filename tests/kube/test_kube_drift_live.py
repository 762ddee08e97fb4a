"""The live reader through the real `kubernetes` client: paging with `continue`, retries on 429
(honouring Retry-After) and 500, a fresh list after 410 Gone, and a kind that cannot be listed
making its categories unavailable rather than "ok". Plus the pure helpers it relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube.conftest import write_kubeconfig
from kube.kubeapi import FakeCluster, canonical, running_cluster
from nixdrift.kube import quantity
from nixdrift.kube.attribution import attribute
from nixdrift.kube.diff import Change, Item, diff
from nixdrift.kube.kinds import BY_KIND
from nixdrift.kube.live import ListPolicy, read
from nixdrift.sinks.kube import api_client


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    yield from running_cluster(system=False)


@pytest.fixture
def api(cluster: FakeCluster, tmp_path: Path) -> Any:
    return api_client(str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)))


def config_maps(cluster: FakeCluster, n: int, namespace: str = "shop") -> None:
    for i in range(n):
        cluster.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i:02d}"}, "data": {"k": str(i)}},
            namespace=namespace,
        )


ONLY_CM = (BY_KIND["ConfigMap"],)


def test_every_page_is_read_with_the_continue_token(cluster: FakeCluster, api: Any) -> None:
    config_maps(cluster, 7)
    live = read(api, None, kinds=ONLY_CM, policy=ListPolicy(page=3))
    assert sorted(k.name for k in live.objects) == [f"cm-{i:02d}" for i in range(7)]
    pages = cluster.lists("/api/v1/configmaps")
    assert [r.query.get("limit") for r in pages] == [["3"]] * 3
    assert [r.query.get("continue") is not None for r in pages] == [False, True, True]
    assert not live.unavailable


def test_a_namespace_is_listed_on_its_own_path(cluster: FakeCluster, api: Any) -> None:
    config_maps(cluster, 2, "shop")
    config_maps(cluster, 3, "other")
    live = read(api, "shop", kinds=ONLY_CM)
    assert {k.namespace for k in live.objects} == {"shop"}
    assert [r.path for r in cluster.lists()] == ["/api/v1/namespaces/shop/configmaps"]


def test_429_and_500_are_retried_with_retry_after(cluster: FakeCluster, api: Any) -> None:
    config_maps(cluster, 4)
    cluster.fail(429, retry_after=3)
    cluster.fail(500, only_continue=True)
    slept: list[float] = []
    live = read(api, None, kinds=ONLY_CM, policy=ListPolicy(page=2, backoff=0.25), sleep=slept.append)
    assert len(live.objects) == 4
    assert slept == [3.0, 0.25]  # the server's Retry-After, then the backoff
    assert len(cluster.lists()) == 4  # 429, page 1, 500 on page 2, page 2


def test_an_expired_continue_token_starts_the_list_again(cluster: FakeCluster, api: Any) -> None:
    config_maps(cluster, 5)
    cluster.fail(410, only_continue=True)
    live = read(api, None, kinds=ONLY_CM, policy=ListPolicy(page=2), sleep=lambda _s: None)
    assert len(live.objects) == 5
    tokens = [r.query.get("continue") for r in cluster.lists()]
    # page 1, 410 on page 2, then from the start: no page of the old snapshot is mixed in
    assert [t is None for t in tokens] == [True, False, True, False, False]


def test_a_kind_that_cannot_be_listed_is_unavailable(cluster: FakeCluster, api: Any) -> None:
    config_maps(cluster, 1)
    cluster.fail(403, path_part="/secrets")
    cluster.fail(500, 500, 500, path_part="/networkpolicies")
    kinds = (BY_KIND["ConfigMap"], BY_KIND["Secret"], BY_KIND["NetworkPolicy"])
    live = read(api, None, kinds=kinds, policy=ListPolicy(attempts=3), sleep=lambda _s: None)
    assert live.unavailable == {
        "Secret": "cannot list Secret: HTTP 403 Forbidden",
        "NetworkPolicy": "cannot list NetworkPolicy: HTTP 500 Internal Server Error",
    }
    assert len(live.objects) == 1


def test_secret_values_become_digests_where_they_are_read(cluster: FakeCluster, api: Any) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
    live = read(api, None, kinds=(BY_KIND["Secret"],))
    (secret,) = live.objects.values()
    assert set(secret.body["data"]) == {"pw"}
    assert secret.body["data"]["pw"].startswith("sha256:")
    assert "aHVudGVyMg==" not in repr(secret)  # the base64 value the server sent


@pytest.mark.parametrize(
    ("declared", "live", "same"),
    [("500m", "0.5", True), ("1Gi", "1024Mi", True), ("1", "1000m", True), ("2", "2.5", False), ("1G", "1Gi", False)],
)
def test_quantities_compare_by_value(declared: str, live: str, same: bool) -> None:
    assert quantity.equal(declared, live) is same
    assert quantity.equal(declared, canonical(declared))


def test_diff_compares_only_declared_fields_and_matches_containers_by_name() -> None:
    declared = {
        "spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}], "tolerations": []}
    }
    live = {
        "spec": {
            "containers": [
                {"name": "b", "image": "y:1", "imagePullPolicy": "IfNotPresent"},
                {"name": "a", "image": "x:2"},
                {"name": "c", "image": "z:1"},
            ],
            "dnsPolicy": "ClusterFirst",
        }
    }
    found = {(d.dotted, d.change) for d in diff(declared, live)}
    assert found == {("spec.containers[name=a].image", Change.CHANGED), ("spec.containers[name=c]", Change.ADDED)}


def test_attribution_names_the_owner_of_the_deepest_field() -> None:
    live = {
        "metadata": {
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T00:00:00Z",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {
                     "f:image": {}, "f:resources": {"f:limits": {"f:cpu": {}}}}}}}}}},
                {"manager": "kubectl-edit", "operation": "Update", "time": "2026-02-01T00:00:00Z",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {
                     "f:resources": {"f:limits": {"f:memory": {}}}}}}}}}},
            ]
        }
    }  # fmt: skip
    base = ("spec", "template", "spec", "containers", Item("name", "app"), "resources", "limits")
    memory = attribute(live, (*base, "memory"))
    cpu = attribute(live, (*base, "cpu"))
    assert memory is not None and (memory.manager, memory.time) == ("kubectl-edit", "2026-02-01T00:00:00Z")
    assert cpu is not None and cpu.manager == "kubectl-client-side-apply"


def test_the_checker_role_may_list_every_kind_the_reader_lists() -> None:
    import yaml

    from kube.conftest import TOP
    from nixdrift.kube.kinds import KINDS

    role = yaml.safe_load((TOP / "deploy" / "rbac" / "kube-checker.yaml").read_text())
    allowed = {
        (group, resource)
        for rule in role["rules"]
        if "list" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    needed = {(k.api_version.rpartition("/")[0], k.plural) for k in KINDS}
    assert needed <= allowed, needed - allowed
    assert all(set(rule["verbs"]) <= {"get", "list"} for rule in role["rules"])  # read-only
