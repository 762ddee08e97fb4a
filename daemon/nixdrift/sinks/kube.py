"""Kubernetes sink: each host's report as one `PolicyReport` (wgpolicyk8s.io/v1alpha2).

`policy_report(report)` builds the object (pure); `KubeSink` sends it from a background thread with
server-side apply, keeps what is not sent yet in the state database (`sinks.outbox`) and retries
with exponential backoff and jitter, so a scan never waits for the API server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from nixdrift import __version__
from nixdrift.config import KubernetesConfig
from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, Report, Severity
from nixdrift.redact import strip_userinfo
from nixdrift.sinks.outbox import Outbox
from nixdrift.text import display

log = logging.getLogger(__name__)

GROUP = "wgpolicyk8s.io"
VERSION = "v1alpha2"
PLURAL = "policyreports"
FIELD_MANAGER = "nixdrift"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MANAGED_BY = "app.kubernetes.io/managed-by"
SELECTOR = f"{MANAGED_BY}=nixdrift"
HOST_LABEL = "nixdrift/host"
ANN = "nixdrift/"  # annotation prefix: host, toplevel, flake-revision, scan-time, agent-version, ...
SENT_AT = ANN + "sent-at"  # set when a copy leaves, so a heartbeat of an old scan still shows the host alive
MAX_BYTES = 512 * 1024  # the object as serialised on the wire, kept well under etcd's 1.5 MiB
_RESERVE = 512  # room left for the sent-at annotation added at send time
_SHORT = 200  # expected/actual in properties
_MESSAGE = 1024
_RESULT_ORDER = {"fail": 0, "warn": 1, "skip": 2}
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def object_name(host: str) -> str:
    """The host's DNS-1123 label (also a valid label value): the host name itself when it already is
    one, else a cleaned name plus a hash of the original, so two hosts never share a report."""
    if re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", host):
        return host
    digest = hashlib.sha256(host.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    cleaned = _NOT_NAME.sub("-", host.lower()).strip("-")[:54].strip("-")
    return f"{cleaned or 'host'}-{digest}"


def _timestamp(iso: str) -> dict[str, int]:
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return {"seconds": 0, "nanos": 0}
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = moment.microsecond
    return {"seconds": int(moment.replace(microsecond=0).timestamp()), "nanos": micros * 1000}


def _short(text: str, limit: int = _SHORT) -> str:
    """A host value for the API server: no URL credentials, no control or bidi character, bounded."""
    text = display(strip_userinfo(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result(f: Finding, report: Report) -> dict[str, Any]:
    outcome = "skip" if f.accepted else "fail" if f.severity >= report.threshold else "warn"
    props = {"expected": _short(f.expected), "actual": _short(f.actual), "subject": _short(f.subject, 512)}
    props["kind"] = f.kind.value
    if f.path:
        props["path"] = _short(f.path, 512)
    return {
        "policy": f.category.value,
        "rule": _short(f.id, 1024),
        "result": outcome,
        "severity": f.severity.label,
        "message": _short(f.message, _MESSAGE),
        "properties": props,
        "source": "nixdrift",
        "timestamp": _timestamp(f.last_seen or report.generated_at),
    }


def summary(report: Report) -> dict[str, int]:
    """Counted over every finding and category, before any truncation."""
    active = report.active
    failing = sum(1 for f in active if f.severity >= report.threshold)
    states = list(report.categories.values())
    return {
        "pass": sum(1 for s in states if s == "ok"),
        "fail": failing,
        "warn": len(active) - failing,
        "error": sum(1 for s in states if s.startswith("unavailable")),
        "skip": len(report.findings) - len(active),
    }


def wire_size(obj: Mapping[str, Any]) -> int:
    """Bytes on the wire: the client serialises the apply body with plain `json.dumps` (ASCII)."""
    return len(json.dumps(obj))


def policy_report(
    report: Report,
    *,
    namespace: str = "nixdrift",
    agent_version: str = __version__,
    heartbeat: int | None = None,
    limit: int = MAX_BYTES,
) -> dict[str, Any]:
    """The PolicyReport for one host, at most `limit` bytes, keeping the most severe findings."""
    name = object_name(report.host)
    results = sorted(
        (_result(f, report) for f in report.findings),
        key=lambda r: (_RESULT_ORDER[r["result"]], -Severity.parse(r["severity"]).value, r["rule"]),
    )
    annotations = {
        ANN + "host": _short(report.host, 512),
        ANN + "toplevel": _short(report.generations.current or "", 512),
        ANN + "declared-toplevel": _short(report.generations.declared or "", 512),
        ANN + "flake-revision": _short(report.flake.revision or "", 512),
        ANN + "flake-dirty": str(report.flake.dirty).lower(),
        ANN + "scan-time": report.generated_at,
        ANN + "agent-version": agent_version,
        ANN + "threshold": report.threshold.label,
        ANN + "findings": str(len(results)),
        ANN + "published-findings": str(len(results)),
        ANN + "truncated": "false",
    }
    if heartbeat:
        annotations[ANN + "heartbeat"] = str(heartbeat)
    unavailable = sorted((c.value, s) for c, s in report.categories.items() if s.startswith("unavailable"))
    if unavailable:  # counted in summary.error; here each with its reason (never a silent "pass")
        annotations[ANN + "unavailable"] = _short(
            "; ".join(f"{c}: {s.split(': ', 1)[-1]}" for c, s in unavailable), 4 * _MESSAGE
        )
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PolicyReport",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: "nixdrift", HOST_LABEL: name},
            "annotations": annotations,
        },
        "scope": {"kind": "Host", "name": _short(report.host, 512)},
        "summary": summary(report),
        "results": [],
    }
    kept = _fit(obj, results, limit - _RESERVE)
    annotations[ANN + "published-findings"] = str(kept)
    annotations[ANN + "truncated"] = str(kept < len(results)).lower()
    obj["results"] = results[:kept]
    while kept and wire_size(obj) > limit - _RESERVE:  # the estimate is exact; this guards a mistake
        kept -= 1
        obj["results"] = results[:kept]
        annotations[ANN + "published-findings"] = str(kept)
    return obj


def _fit(obj: dict[str, Any], results: list[dict[str, Any]], budget: int) -> int:
    """How many leading results fit: base size (with the longest annotation values) plus each item
    and its `, ` separator, exactly as json.dumps lays the list out."""
    ann = obj["metadata"]["annotations"]
    ann[ANN + "truncated"] = "false"  # "false" is longer than "true"
    used = wire_size(obj)
    for count, item in enumerate(results):
        used += len(json.dumps(item)) + (2 if count else 0)
        if used > budget:
            return count
    return len(results)


def policy_report_yaml(report: Report) -> str:
    """`nixdrift check --format policyreport`: the object `kubectl apply -f -` accepts."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "---\n" + yaml.dump(policy_report(report), Dumper=dumper, sort_keys=False, allow_unicode=True)


def api_client(kubeconfig: str | None, *, in_cluster_fallback: bool = False) -> Any:
    """A kubernetes ApiClient from a kubeconfig file, else the pod's service account.

    Retries inside the client are off: the sink's backoff decides when to try again.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped package
    configuration = client.Configuration()
    try:
        if kubeconfig is not None or in_cluster_fallback:
            try:
                config.load_kube_config(
                    config_file=kubeconfig, client_configuration=configuration, persist_config=False
                )
            except (config.ConfigException, OSError):
                if kubeconfig is not None:
                    raise
                config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        where = kubeconfig or "the in-cluster service account"
        raise NixdriftError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
    configuration.retries = 0
    return client.ApiClient(configuration)


def apply(api: Any, obj: Mapping[str, Any], timeout: float) -> None:
    """Server-side apply of one PolicyReport, or OpenReports Report (PATCH, apply-patch+yaml, force)."""
    from kubernetes import client

    meta = obj["metadata"]
    group, _, version = str(obj.get("apiVersion", f"{GROUP}/{VERSION}")).partition("/")
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        group,
        version,
        meta["namespace"],
        "reports" if obj.get("kind") == "Report" else PLURAL,
        meta["name"],
        dict(obj),
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY_CONTENT_TYPE,
        _request_timeout=timeout,
    )


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def describe(exc: BaseException) -> str:
    status = _status_of(exc)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {exc}"[:500]


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _spelled(obj: dict[str, Any], report_format: str) -> list[dict[str, Any]]:
    """The objects `reportFormat` asks for: the PolicyReport, its OpenReports Report, or both."""
    if report_format == "policyreport":
        return [obj]
    from nixdrift.sinks.openreports import from_policy_report

    report = from_policy_report(obj)
    return [report] if report_format == "openreports" else [obj, report]


class KubeSink:
    """Publishes reports from a background thread; `submit` only hands the report over."""

    def __init__(
        self,
        cfg: KubernetesConfig,
        state_dir: Path,
        agent_version: str,
        *,
        request_timeout: float = 10.0,
        backoff_initial: float = 2.0,
        backoff_max: float = 300.0,
        rng: random.Random | None = None,
        max_pending: int = 16,
    ) -> None:
        self.cfg = cfg
        self.agent_version = agent_version
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._outbox_path = Path(state_dir) / "nixdrift.db"
        self.outbox = Outbox(self._outbox_path)
        self.max_pending = max_pending  # reports handed over and not yet queued: the oldest go first
        self.dropped = 0  # reports dropped to keep that bound, and old queued ones the outbox dropped
        self._pending: deque[tuple[Report, bool]] = deque()
        self._change_dropped = False
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client: Any = None
        self._latest: tuple[str, str, str, str] | None = None  # namespace, name, generated_at, body
        self._last_sent: float | None = None  # monotonic
        self._next_try = 0.0
        self.failures = 0  # consecutive
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="nixdrift-kube", daemon=True)
        self._thread.start()

    # -- the daemon's side ------------------------------------------------------------------

    def submit(self, report: Report, changed: bool) -> None:
        """Never blocks: the report is handed to the sender thread. At most `max_pending` wait;
        beyond that the oldest is dropped (counted in `dropped`): a newer report says more."""
        self._pending.append((report, changed))
        while len(self._pending) > self.max_pending:
            try:
                _old, was_changed = self._pending.popleft()
            except IndexError:  # the sender took it meanwhile
                break
            self._change_dropped |= was_changed  # a change must still be published: the next carries it
            self.dropped += 1
        self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sender; whatever was submitted but not yet queued is written to the outbox."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._flush_pending()

    # -- the sender thread ------------------------------------------------------------------

    def _heartbeat_due(self, now: float) -> bool:
        return self._last_sent is None or now - self._last_sent >= self.cfg.heartbeat

    def _flush_pending(self) -> None:
        with self._flush_lock:
            while self._pending:
                report, changed = self._pending.popleft()
                changed, self._change_dropped = changed or self._change_dropped, False
                try:
                    obj = policy_report(
                        report,
                        namespace=self.cfg.namespace,
                        agent_version=self.agent_version,
                        heartbeat=self.cfg.heartbeat,
                    )
                except Exception:
                    log.exception("cannot build the PolicyReport of %s", report.host)
                    continue
                meta = obj["metadata"]
                self._latest = (meta["namespace"], meta["name"], report.generated_at, json.dumps(obj))
                if changed or self._heartbeat_due(time.monotonic()):
                    self._enqueue(*self._latest)

    def _enqueue(self, namespace: str, name: str, generated_at: str, body: str) -> None:
        _row_id, dropped = self.outbox.put(namespace, name, generated_at, body)
        self.dropped += dropped
        if dropped:
            log.warning("kubernetes: %d old unsent reports of %s dropped; a newer one is queued", dropped, name)

    def _run(self) -> None:
        """Survives any single error (an outbox the disk cannot write, a bad report, a bug): it is
        logged, the outbox reopened, and the loop goes on after a backoff."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._flush_pending()
                if self._stop.is_set():
                    break
                wait = self._step()
            except Exception as exc:  # the sender must outlive whatever one step raises
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                wait = self._backoff()
                log.error("kubernetes sender: %s; retrying in %.1fs", self.last_error, wait, exc_info=True)
                self._reopen()
            self._wake.wait(wait)

    def _reopen(self) -> None:
        try:
            self.outbox = Outbox(self._outbox_path)
        except Exception as exc:  # noqa: BLE001 - tried again after the next failure
            log.debug("kubernetes sender: cannot reopen the outbox yet: %s", exc)

    def _step(self) -> float:
        """Send what is due; return how long to sleep before looking again."""
        now = time.monotonic()
        queued = self.outbox.queued_count()
        if not queued and self._latest is not None and self._heartbeat_due(now):
            self._enqueue(*self._latest)
            queued = 1
        if queued and now >= self._next_try:
            self._send_newest()
            now = time.monotonic()
            queued = self.outbox.queued_count()
        waits = [float(self.cfg.heartbeat) - (now - self._last_sent)] if self._last_sent is not None else []
        if queued:
            waits.append(self._next_try - now)
        return max(0.01, min(waits, default=float(self.cfg.heartbeat)))

    def _backoff(self) -> float:
        """Exponential with 'equal jitter': half fixed, half random, capped."""
        delay = min(self.backoff_max, self.backoff_initial * float(2 ** min(self.failures - 1, 30)))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _send_newest(self) -> None:
        row = self.outbox.newest_queued()
        if row is None:
            return
        obj = json.loads(row.body)
        obj["metadata"]["annotations"][SENT_AT] = _now_iso()
        try:
            if self._client is None:
                self._client = api_client(self.cfg.kubeconfig)
            for each in _spelled(obj, self.cfg.report_format):
                apply(self._client, each, self.request_timeout)
        except Exception as exc:  # noqa: BLE001 - urllib3, ApiException, credentials: all are retried
            self._failed(row.id, row.name, exc)
            return
        superseded = self.outbox.mark_sent(row.id)
        if self.failures:
            log.info("kubernetes: PolicyReport %s sent after %d failed attempts", row.name, self.failures)
        log.debug("kubernetes: sent %s (%d older reports superseded)", row.name, superseded)
        self.failures = 0
        self.last_error = ""
        self._next_try = 0.0
        self._last_sent = time.monotonic()

    def _failed(self, row_id: int, name: str, exc: BaseException) -> None:
        why = describe(exc)
        self.last_error = why
        if _status_of(exc) in (400, 413, 422):  # the object itself is refused: retrying cannot help
            self.outbox.mark_rejected(row_id, why)
            log.error("kubernetes: PolicyReport %s rejected: %s %s", name, why, getattr(exc, "body", "") or "")
            return
        if isinstance(exc, NixdriftError):
            self._client = None
        self.failures += 1
        self.outbox.mark_failed(row_id, why)
        delay = self._backoff()
        self._next_try = time.monotonic() + delay
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        log.log(level, "kubernetes: cannot send %s (%s); retrying in %.1fs", name, why, delay)
