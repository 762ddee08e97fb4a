"""Fixtures for the Kubernetes sink, `fleet` and `explain`: in-memory reports, the CRD's schema, and
a local HTTP endpoint (a tiny fake API server on 127.0.0.1) that records every request."""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from nixdrift.models import Category, Finding, FlakeInfo, Generations, Kind, Report, Severity
from nixdrift.models import Fix as FixRecord

if TYPE_CHECKING:  # kubeapi imports this module: its helpers are imported where a fixture runs
    from kube.kubeapi import FakeCluster

DATA = Path(__file__).parent / "data"
TOP = Path(__file__).resolve().parents[2]
STORE = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web1-24.05"


def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to the local endpoint must never go through a proxy from the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)


def make_finding(
    fid: str,
    severity: Severity = Severity.HIGH,
    *,
    category: Category | None = None,
    kind: Kind = Kind.CHANGED,
    expected: str = "declared",
    actual: str = "live",
    message: str = "",
    path: str = "",
    accepted: bool = False,
) -> Finding:
    cat = category or Category(fid.split("/", 1)[0])
    return Finding(
        id=fid,
        category=cat,
        subject=fid.split("/")[1] if fid.count("/") >= 1 else fid,
        kind=kind,
        expected=expected,
        actual=actual,
        message=message or f"{fid} drifted",
        fix=FixRecord(nix="{ }", command="true", safe=False),
        severity=severity,
        evidence={"path": path} if path else {},
        first_seen="2024-05-01T10:00:00Z",
        last_seen="2024-05-01T12:00:00.250000Z",
        accepted=accepted,
    )


def make_report(
    host: str = "web1",
    findings: tuple[Finding, ...] | list[Finding] = (),
    *,
    generated_at: str = "2024-05-01T12:00:00Z",
    threshold: Severity = Severity.MEDIUM,
) -> Report:
    cats = {c: "ok" for c in Category.host()}
    for f in findings:
        cats[f.category] = "drift"
    cats[Category.REPO] = "unavailable: not a git repository"
    return Report(
        host=host,
        generated_at=generated_at,
        flake=FlakeInfo(reference="/etc/nixos", revision="8f3e2a1b", dirty=False),
        generations=Generations(declared=STORE, current=STORE, booted=STORE),
        categories=cats,
        findings=tuple(findings),
        threshold=threshold,
    )


@pytest.fixture
def report_factory() -> Callable[..., Report]:
    return make_report


@pytest.fixture
def finding_factory() -> Callable[..., Finding]:
    return make_finding


# -- the CRD schema -----------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """The CRD's schema as the API server applies it: a field the schema does not list is pruned
    (silently lost), so here it is an error."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="session")
def crd_schema() -> dict[str, Any]:
    schema = json.loads((DATA / "policyreport-v1alpha2.openapi.json").read_text())
    strict = _strict(schema)
    strict["properties"]["metadata"] = {  # metadata is ObjectMeta, checked as the API server would
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "labels": {
                "type": "object",
                "additionalProperties": {
                    "type": "string",
                    "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
                    "maxLength": 63,
                },
            },
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    strict["required"] = ["apiVersion", "kind", "metadata"]
    return strict


@pytest.fixture
def validate(crd_schema: dict[str, Any]) -> Callable[[Any], None]:
    import jsonschema

    validator = jsonschema.Draft7Validator(crd_schema)

    def check(obj: Any) -> None:
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])

    return check


# -- a local API server ---------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> Any:
        return json.loads(self.body)

    @classmethod
    def read(cls, handler: BaseHTTPRequestHandler) -> Request:
        """The request a handler of the local endpoint is answering, its body read."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        return cls(handler.command, parsed.path, urllib.parse.parse_qs(parsed.query), headers, body)


@dataclass
class FakeAPI:
    """Answers PATCH (server-side apply: stores the object) and GET (lists, paginated).

    `script` holds what to do with the next requests, one entry each: an HTTP status to answer,
    "hang" (answer only after the client gave up), or "ok"; when empty every request succeeds.
    """

    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    script: list[int | str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def patches(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "PATCH"]

    def start(self, port: int = 0) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                req = Request.read(self)
                with api.lock:
                    api.requests.append(req)
                    action = api.script.pop(0) if api.script else "ok"
                if action == "hang":
                    api.release.wait(10)
                    return
                if isinstance(action, int):
                    self._answer(action, {"kind": "Status", "status": "Failure", "code": action})
                    return
                if self.command == "PATCH":
                    obj = yaml.safe_load(req.body)
                    meta = obj["metadata"]
                    with api.lock:
                        api.objects[(meta["namespace"], meta["name"])] = obj
                    self._answer(200, obj)
                else:
                    self._answer(200, api.list(req.path, req.query))

            do_GET = do_PATCH = do_POST = _handle

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self.server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self.release = threading.Event()

    def list(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        selector = (query.get("labelSelector") or [""])[0]
        key, _, value = selector.partition("=")
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (ns, _name), o in sorted(self.objects.items())
                if (namespace is None or ns == namespace)
                and (not key or (o["metadata"].get("labels") or {}).get(key) == value)
            ]
        start = int((query.get("continue") or ["0"])[0])
        limit = int((query.get("limit") or [str(len(items) or 1)])[0])
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReportList",
            "metadata": {"continue": str(start + limit)} if more else {},
            "items": page,
        }


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    api = FakeAPI()
    api.start()
    yield api
    api.stop()


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server}}],
                "users": [{"name": "web1", "user": {"token": "test-token"}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "web1"}}],
                "current-context": "local",
            }
        )
    )
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_api: FakeAPI) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", fake_api.url)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll a condition until it holds or the deadline passes (no sleeps-and-hope)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def poll() -> Callable[..., Any]:
    return wait_for


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    """The local API server with the kube-system objects a real cluster has."""
    from kube.kubeapi import running_cluster

    yield from running_cluster()


@pytest.fixture
def shop(tmp_path: Path, cluster: FakeCluster) -> Path:
    """The shop's manifests, committed in git and applied to the cluster."""
    from kube.kubeapi import shop_repo

    return shop_repo(tmp_path, cluster)
