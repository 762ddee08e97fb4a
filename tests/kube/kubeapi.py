"""A local HTTP server that answers the `kubernetes` client like a real API server, for `nixdrift kube`.

What a real server does and this one does too: it fills in each kind's documented defaults on
write (a Deployment's strategy, revisionHistoryLimit and progressDeadlineSeconds, a pod spec's
dnsPolicy, restartPolicy, schedulerName, securityContext and terminationGracePeriodSeconds, a
container's terminationMessagePath/Policy and imagePullPolicy, a Service's clusterIP and port
protocol, a NetworkPolicy's policyTypes, a Secret's type and stringData folded into base64 data),
canonicalises quantities (`0.5` -> `500m`, `1024Mi` -> `1Gi`), keeps `metadata.managedFields` (who
owns which field, `fieldsV1`), `resourceVersion`, `uid`, `generation`, `creationTimestamp` and the
last-applied annotation, adds status, pages lists with `limit` and `continue` (a consistent snapshot
per list), and answers `410 Gone` for an expired continue token, `429` with Retry-After, or `500`
when a test asks. PATCH with `application/apply-patch+yaml` is server-side apply, `dryRun=All`
included. The PolicyReport endpoint of `conftest.FakeAPI` is separate; this one extends it for the
built-in kinds rather than rewriting it.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from kube.conftest import DATA, Request
from nixdrift.kube import quantity

# kind -> (group ("" for core), version, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, str, bool]] = {
    "Deployment": ("apps", "v1", "deployments", True),
    "StatefulSet": ("apps", "v1", "statefulsets", True),
    "DaemonSet": ("apps", "v1", "daemonsets", True),
    "CronJob": ("batch", "v1", "cronjobs", True),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers", True),
    "Secret": ("", "v1", "secrets", True),
    "ConfigMap": ("", "v1", "configmaps", True),
    "Service": ("", "v1", "services", True),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies", True),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings", True),
    "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
}
BY_PLURAL = {plural: kind for kind, (_g, _v, plural, _n) in RESOURCES.items()}
Key = tuple[str, str, str]  # kind, namespace ("" cluster-scoped), name


def _binary(value: Decimal) -> str | None:
    for suffix, power in (("Ei", 6), ("Pi", 5), ("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
        unit = Decimal(1024) ** power
        if value >= unit and value % unit == 0:
            return f"{int(value / unit)}{suffix}"
    return None


def canonical(text: Any) -> Any:
    """A quantity as the API server stores it (binary input stays binary, else decimal SI)."""
    value = quantity.parse(text)
    if value is None:
        return text
    if isinstance(text, str) and text.endswith("i"):
        return _binary(value) or str(int(value))
    for suffix, unit in (("E", Decimal("1e18")), ("P", Decimal("1e15")), ("T", Decimal("1e12")), ("G", Decimal("1e9")),
                         ("M", Decimal("1e6")), ("k", Decimal("1e3")), ("", Decimal(1))):  # fmt: skip
        if value >= unit and value % unit == 0:
            return f"{int(value / unit)}{suffix}"
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return f"{int(value * Decimal('1e9'))}n"


def _container_defaults(c: dict[str, Any]) -> None:
    image = str(c.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    c.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    for part in ("limits", "requests"):
        if part in res:
            res[part] = {k: canonical(v) for k, v in res[part].items()}
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for var in c.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("fieldRef")
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def _pod_template_defaults(template: dict[str, Any]) -> None:
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = template.setdefault("spec", {})
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or []:
            _container_defaults(c)
    for vol in spec.get("volumes") or []:
        if "secret" in vol:
            vol["secret"].setdefault("defaultMode", 420)
        if "configMap" in vol:
            vol["configMap"].setdefault("defaultMode", 420)


def server_defaults(obj: dict[str, Any]) -> None:
    """Each kind's documented defaults, as the API server fills them in on create and update."""
    kind = obj["kind"]
    spec: dict[str, Any] = obj.get("spec") or {}
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _pod_template_defaults(spec["template"])
    elif kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        _pod_template_defaults(spec["template"])
    elif kind == "DaemonSet":
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        )
        spec.setdefault("revisionHistoryLimit", 10)
        _pod_template_defaults(spec["template"])
    elif kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job = spec.setdefault("jobTemplate", {})
        job.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _pod_template_defaults(job.setdefault("spec", {}).setdefault("template", {}))
    elif kind == "HorizontalPodAutoscaler":
        if obj.get("apiVersion") == "autoscaling/v1":  # stored and served as v2: the server converts
            obj["apiVersion"] = "autoscaling/v2"
            cpu = spec.pop("targetCPUUtilizationPercentage", None)
            if cpu is not None:
                target = {"type": "Utilization", "averageUtilization": cpu}
                spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
        spec.setdefault("minReplicas", 1)
        spec.setdefault(
            "metrics",
            [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        )
        spec.setdefault(
            "behavior",
            {
                "scaleDown": {
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                    "selectPolicy": "Max",
                },
                "scaleUp": {
                    "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                    ],
                    "selectPolicy": "Max",
                    "stabilizationWindowSeconds": 0,
                },
            },
        )
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        data = obj.setdefault("data", {})
        for k, v in (obj.pop("stringData", None) or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", "10.96.12.34")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
    elif kind == "NetworkPolicy":
        spec.setdefault("podSelector", {})
        spec.setdefault("policyTypes", ["Ingress", *(["Egress"] if "egress" in spec else [])])
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for port in rule.get("ports") or []:
                    port.setdefault("protocol", "TCP")
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects") or []:
            if subject.get("kind") in ("User", "Group"):
                subject.setdefault("apiGroup", "rbac.authorization.k8s.io")


def _status(obj: dict[str, Any]) -> None:
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet"):
        n = obj["spec"].get("replicas", 1)
        obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": n, "readyReplicas": n}
    elif kind == "HorizontalPodAutoscaler":
        obj["status"] = {"currentReplicas": obj["spec"]["minReplicas"], "desiredReplicas": obj["spec"]["minReplicas"]}
    elif kind == "CronJob":
        obj["status"] = {}


_MERGE = ("name", "containerPort", "mountPath", "port")


def fields_v1(value: Any) -> dict[str, Any]:
    """The `fieldsV1` set of everything in `value` (as a manager that wrote all of it owns it)."""
    out: dict[str, Any] = {}
    if not isinstance(value, dict):
        return out
    for k, v in value.items():
        if isinstance(v, dict):
            out[f"f:{k}"] = fields_v1(v)
        elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            key = next((m for m in _MERGE if all(m in i for i in v)), None)
            if key is None:
                out[f"f:{k}"] = {}
                continue
            out[f"f:{k}"] = {
                f"k:{json.dumps({key: i[key]}, separators=(',', ':'))}": {".": {}, **fields_v1(i)} for i in v
            }
        else:
            out[f"f:{k}"] = {}
    return out


def _seg_key(seg: str | dict[str, Any]) -> str:
    return f"f:{seg}" if isinstance(seg, str) else f"k:{json.dumps(seg, separators=(',', ':'))}"


def _own(fields: dict[str, Any], path: list[str | dict[str, Any]]) -> None:
    node = fields
    for seg in path:
        node = node.setdefault(_seg_key(seg), {})


def _disown(fields: dict[str, Any], path: list[str | dict[str, Any]]) -> None:
    node = fields
    for seg in path[:-1]:
        nxt = node.get(_seg_key(seg))
        if not isinstance(nxt, dict):
            return
        node = nxt
    node.pop(_seg_key(path[-1]), None)


def _walk(obj: Any, path: list[str | dict[str, Any]], create: bool = True) -> tuple[Any, str | dict[str, Any]]:
    """The container of the last segment (a dict segment names a list item by its merge key)."""
    node = obj
    for i, seg in enumerate(path[:-1]):
        if isinstance(seg, dict):
            ((key, value),) = seg.items()
            node = next(item for item in node if item.get(key) == value)
        else:
            if seg not in node and create:
                node[seg] = [] if isinstance(path[i + 1], dict) else {}
            node = node[seg]
    return node, path[-1]


@dataclass
class Scripted:
    status: int
    path_part: str = ""  # only requests whose path holds this
    only_continue: bool = False  # only requests that carry a continue token
    retry_after: int | None = None


@dataclass
class FakeCluster:
    """A cluster's objects behind a local HTTP API (see the module docstring)."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    script: list[Scripted] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    server: ThreadingHTTPServer | None = None
    port: int = 0
    _rv: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    _snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests do to the cluster -----------------------------------------------------

    def tick(self, seconds: int = 60) -> str:
        self.clock += timedelta(seconds=seconds)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def apply(
        self, manifest: dict[str, Any], namespace: str = "default", manager: str = "kubectl-client-side-apply"
    ) -> None:
        """`kubectl apply` (client side): the object with defaults, the last-applied annotation and
        the manager owning every field the manifest set."""
        obj = copy.deepcopy(manifest)
        kind = obj["kind"]
        namespaced = RESOURCES[kind][3]
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", namespace)
        annotations = meta.setdefault("annotations", {})
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(manifest, sort_keys=True)
        owned = fields_v1({k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")})
        owned.setdefault("f:metadata", {}).setdefault("f:annotations", {})[
            "f:kubectl.kubernetes.io/last-applied-configuration"
        ] = {}
        owned["f:metadata"].pop("f:name", None)
        owned["f:metadata"].pop("f:namespace", None)
        if kind == "Secret" and "f:stringData" in owned:
            owned.setdefault("f:data", {}).update(owned.pop("f:stringData"))
        self._store(obj, [{"manager": manager, "operation": "Update", "fieldsV1": owned}])

    def create(self, manifest: dict[str, Any], namespace: str = "default", manager: str = "kubectl-create") -> None:
        """An object made imperatively (`kubectl create`, `kubectl run`)."""
        obj = copy.deepcopy(manifest)
        if RESOURCES[obj["kind"]][3]:
            obj["metadata"].setdefault("namespace", namespace)
        owned = fields_v1({k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")})
        self._store(obj, [{"manager": manager, "operation": "Update", "fieldsV1": owned}])

    def _store(self, obj: dict[str, Any], managed: list[dict[str, Any]]) -> None:
        server_defaults(obj)
        meta = obj["metadata"]
        now = self.tick(1)
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._rv)),
            creationTimestamp=now,
            managedFields=[
                {"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1", "time": now, **m} for m in managed
            ],
        )
        if obj["kind"] not in (
            "Secret",
            "ConfigMap",
            "Service",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ):
            meta["generation"] = 1
        _status(obj)
        with self.lock:
            self.objects[self.key_of(obj)] = obj

    @staticmethod
    def key_of(obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (obj["kind"], meta.get("namespace", "") if RESOURCES[obj["kind"]][3] else "", meta["name"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return self.objects[(kind, namespace, name)]

    def edit(
        self,
        kind: str,
        namespace: str,
        name: str,
        path: list[str | dict[str, Any]],
        value: Any,
        manager: str = "kubectl-edit",
    ) -> None:
        """`kubectl edit`/`patch`: one field set (None: removed); that manager now owns it."""
        with self.lock:
            obj = self.objects[(kind, namespace, name)]
            node, last = _walk(obj, path)
            if isinstance(last, dict):  # a whole list item: value None removes it, else appends
                ((k, v),) = last.items()
                node[:] = [i for i in node if i.get(k) != v]
                if value is not None:
                    node.append(value)
            elif value is None:
                node.pop(last, None)
            else:
                node[last] = value
            server_defaults(obj)
            now = self.tick(1)
            managed = obj["metadata"]["managedFields"]
            for entry in managed:
                _disown(entry["fieldsV1"], path)
            mine = next((m for m in managed if m["manager"] == manager and m["operation"] == "Update"), None)
            if mine is None:
                mine = {
                    "manager": manager,
                    "operation": "Update",
                    "apiVersion": obj["apiVersion"],
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {},
                }
                managed.append(mine)
            mine["time"] = now
            if value is not None:
                _own(mine["fieldsV1"], path)
                if isinstance(value, dict):
                    node_fields = mine["fieldsV1"]
                    for seg in path:
                        node_fields = node_fields[_seg_key(seg)]
                    node_fields.update(fields_v1(value))
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            if "generation" in obj["metadata"] and path[0] == "spec":
                obj["metadata"]["generation"] += 1

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            del self.objects[(kind, namespace, name)]

    def fail(
        self, *statuses: int, path_part: str = "", only_continue: bool = False, retry_after: int | None = None
    ) -> None:
        """The next matching requests are answered with these statuses, one each."""
        with self.lock:
            self.script.extend(Scripted(s, path_part, only_continue, retry_after) for s in statuses)

    def lists(self, path_part: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "GET" and path_part in r.path]

    def patches(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "PATCH"]

    # -- the HTTP side ----------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str | None, str | None]:
        """(kind, namespace or None, name or None) of an API path."""
        parts = path.strip("/").split("/")
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        namespace = None
        if rest and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        kind = BY_PLURAL[rest[0]]
        return kind, namespace, rest[1] if len(rest) > 1 else None

    def _scripted(self, req: Request) -> Scripted | None:
        with self.lock:
            for i, s in enumerate(self.script):
                if s.path_part in req.path and (not s.only_continue or "continue" in req.query):
                    return self.script.pop(i)
        return None

    def _list(self, kind: str, namespace: str | None, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        token = (query.get("continue") or [""])[0]
        limit = int((query.get("limit") or ["0"])[0]) or 10**9
        group, version, _plural, _ns = RESOURCES[kind]
        with self.lock:
            if token:
                snap_id, _, start_text = token.partition(":")
                items = self._snapshots.get(snap_id)
                if items is None:
                    return 410, _status_body(410, "Expired", "The provided continue parameter is too old")
                start = int(start_text)
            else:
                items = [
                    copy.deepcopy(o)
                    for (k, ns, _n), o in sorted(self.objects.items())
                    if k == kind and (namespace is None or ns == namespace)
                ]
                snap_id = uuid.uuid4().hex[:8]
                self._snapshots[snap_id] = items
                start = 0
            page = items[start : start + limit]
            more = start + limit < len(items)
            rv = str(next(self._rv))
        meta: dict[str, Any] = {"resourceVersion": rv}
        if more:
            meta["continue"] = f"{snap_id}:{start + limit}"
            meta["remainingItemCount"] = len(items) - start - limit
        for item in page:  # items of a list carry no kind/apiVersion, as a real server sends them
            item.pop("kind", None)
            item.pop("apiVersion", None)
        api_version = f"{group}/{version}" if group else version
        return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": page}

    def expire_snapshots(self) -> None:
        """Every continue token handed out so far is now too old (410 on its next use)."""
        with self.lock:
            self._snapshots.clear()

    def _apply_patch(self, kind: str, namespace: str | None, name: str, req: Request) -> tuple[int, dict[str, Any]]:
        if req.headers.get("content-type", "").split(";")[0] != "application/apply-patch+yaml":
            return 415, _status_body(415, "UnsupportedMediaType", "only server-side apply is served")
        manager = (req.query.get("fieldManager") or [""])[0]
        if not manager:
            return 422, _status_body(422, "Invalid", "fieldManager is required for apply patch")
        body = yaml.safe_load(req.body)
        key = (kind, namespace or "", name)
        with self.lock:
            current = self.objects.get(key)
            merged = copy.deepcopy(current) if current is not None else {"metadata": {}}
            _merge(merged, body)
            server_defaults(merged)
            if "dryRun" in req.query:
                return 200, merged
            owned = fields_v1({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
            managed = merged["metadata"].setdefault("managedFields", [])
            managed[:] = [m for m in managed if not (m["manager"] == manager and m["operation"] == "Apply")]
            managed.append(
                {
                    "manager": manager,
                    "operation": "Apply",
                    "apiVersion": body["apiVersion"],
                    "fieldsType": "FieldsV1",
                    "time": self.tick(1),
                    "fieldsV1": owned,
                }
            )
            merged["metadata"]["resourceVersion"] = str(next(self._rv))
            self.objects[key] = merged
            return 200, merged

    def start(self) -> None:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                req = Request.read(self)
                with cluster.lock:
                    cluster.requests.append(req)
                scripted = cluster._scripted(req)
                if scripted is not None:
                    extra = {"Retry-After": str(scripted.retry_after)} if scripted.retry_after is not None else {}
                    self._answer(scripted.status, _status_body(scripted.status, "Scripted", "as the test asked"), extra)
                    return
                try:
                    kind, namespace, name = cluster._route(req.path)
                except (KeyError, IndexError):
                    self._answer(404, _status_body(404, "NotFound", f"no route {req.path}"))
                    return
                if self.command == "GET" and name is None:
                    self._answer(*cluster._list(kind, namespace, req.query))
                elif self.command == "PATCH" and name is not None:
                    self._answer(*cluster._apply_patch(kind, namespace, name, req))
                else:
                    self._answer(405, _status_body(405, "MethodNotAllowed", self.command))

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self.server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def with_system_objects(self) -> FakeCluster:
        """What every cluster holds before anyone applies anything (none of it is drift)."""
        for doc in yaml.safe_load_all(SYSTEM_OBJECTS):
            manager = doc.pop("manager")
            self.create(doc, manager=manager)
        return self


SYSTEM_OBJECTS = """
manager: kube-apiserver
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec: {ports: [{name: https, port: 443, targetPort: 6443}]}
---
manager: kube-controller-manager
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: default}
data: {ca.crt: "-----BEGIN CERTIFICATE-----"}
---
manager: kube-controller-manager
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: shop}
data: {ca.crt: "-----BEGIN CERTIFICATE-----"}
---
manager: kubeadm
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec: {containers: [{name: coredns, image: "coredns/coredns:1.11.1"}]}
---
manager: kube-apiserver
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cluster-admin, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
manager: kube-apiserver
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:basic-user", labels: {kubernetes.io/bootstrapping: rbac-defaults}}
rules: [{apiGroups: [authorization.k8s.io], resources: [selfsubjectreviews], verbs: [create]}]
---
manager: kube-apiserver
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cluster-admin, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: Group, name: "system:masters"}]
"""


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        elif isinstance(v, list) and isinstance(target.get(k), list) and v and all(isinstance(i, dict) for i in v):
            key = next((m for m in _MERGE if all(m in i for i in v)), None)
            if key is None:
                target[k] = copy.deepcopy(v)
                continue
            by = {i.get(key): i for i in target[k] if isinstance(i, dict)}
            out = []
            for item in v:
                cur = by.get(item[key])
                if cur is None:
                    out.append(copy.deepcopy(item))
                else:
                    _merge(cur, item)
                    out.append(cur)
            out += [i for i in target[k] if i.get(key) not in {j[key] for j in v}]
            target[k] = out
        else:
            target[k] = copy.deepcopy(v)


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


def running_cluster(*, system: bool = True) -> Iterator[FakeCluster]:
    """A started cluster (with the kube-system objects every real cluster has, unless `system` is
    False), stopped when the fixture that yields from this ends."""
    c = FakeCluster()
    c.start()
    if system:
        c.with_system_objects()
    try:
        yield c
    finally:
        c.stop()


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def apply_all(cluster: FakeCluster, directory: Path) -> None:
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for item in doc["items"] if doc["kind"] == "List" else [doc]:
                cluster.apply(item)


def shop_repo(tmp_path: Path, cluster: FakeCluster, edit: Callable[[Path], None] | None = None) -> Path:
    """The shop's manifests (changed by `edit` first, if given), committed in git and applied."""
    dest = tmp_path / "manifests"
    shutil.copytree(DATA / "shop", dest)
    if edit is not None:
        edit(dest)
    git(dest, "init", "-q")
    git(dest, "add", ".")
    git(dest, "commit", "-q", "-m", "shop")
    apply_all(cluster, dest)
    return dest
