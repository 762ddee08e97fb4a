"""The live side: every object of the compared kinds, listed through the real `kubernetes` client.

Lists are paged (`limit` + `continue`); 429 and 5xx answers are retried with backoff (honouring
`Retry-After`); a 410 Gone (the continue token expired) restarts that kind's list from the first
page, since pages of two snapshots must not be mixed. A kind that still cannot be listed is
recorded as unavailable with the reason: its categories say so, never "ok".

A Secret's values never leave this module: each is replaced by a digest as the page is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nixdrift.kube.kinds import KINDS, KindInfo
from nixdrift.kube.model import KubeObject, Live, ObjectKey

log = logging.getLogger(__name__)

PAGE = 250
RETRIABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ListPolicy:
    page: int = PAGE
    attempts: int = 5  # per request, for 429/5xx
    relists: int = 3  # per kind, for 410 Gone
    backoff: float = 0.5  # seconds, doubled per attempt, capped by max_wait
    max_wait: float = 10.0
    timeout: float = 30.0


class ListError(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        super().__init__(reason)


def read(
    api: Any,
    namespace: str | None,
    *,
    kinds: tuple[KindInfo, ...] = KINDS,
    policy: ListPolicy = ListPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Live:
    objects: dict[ObjectKey, KubeObject] = {}
    unavailable: dict[str, str] = {}
    unreachable = ""
    for kind in kinds:
        if unreachable:  # the API server did not answer at all: the other kinds are not tried for minutes
            unavailable[kind.kind] = f"cannot list {kind.kind}: {unreachable}"
            continue
        try:
            items = list_kind(api, kind, namespace, policy=policy, sleep=sleep)
        except ListError as exc:
            unavailable[kind.kind] = f"cannot list {kind.kind}: {exc}"
            if exc.status is None:
                unreachable = f"the API server did not answer ({exc})"
            continue
        for item in items:
            obj = _object(kind, item)
            objects[obj.key] = obj
    host = getattr(getattr(api, "configuration", None), "host", "") or ""
    listed = frozenset(k.kind for k in kinds) if kinds != KINDS else None
    return Live(objects=objects, unavailable=unavailable, cluster=str(host), listed=listed)


def list_kind(
    api: Any,
    kind: KindInfo,
    namespace: str | None,
    *,
    policy: ListPolicy = ListPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Every object of one kind (in one namespace, or all), page by page."""
    method = lister(api, kind, namespace)
    for _relist in range(policy.relists + 1):
        items: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                page = _page(method, token, policy, sleep)
                items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
                token = (page.get("metadata") or {}).get("continue") or None
                if not token:
                    return items
        except _Gone:
            log.info("list of %s expired (410 Gone): listing again from the start", kind.kind)
            continue
    raise ListError(410, f"the list kept expiring (410 Gone) after {policy.relists} fresh starts")


class _Gone(Exception):
    pass


def lister(api: Any, kind: KindInfo, namespace: str | None) -> Callable[..., Any]:
    """The client's list call for one kind: GET <collection>?limit=&continue= through the real
    ApiClient (its kubeconfig, TLS, bearer token and ApiException), built with `param_serialize`
    rather than the generated `list_namespaced_*` methods: those import several hundred pydantic
    models per API group, seconds of start-up for the same request."""
    from kubernetes.client.exceptions import ApiException

    base = f"/apis/{kind.api_version}" if "/" in kind.api_version else f"/api/{kind.api_version}"
    scoped = kind.namespaced and namespace
    path = f"{base}/namespaces/{{namespace}}/{kind.plural}" if scoped else f"{base}/{kind.plural}"

    def call(*, limit: int, _continue: str | None = None, _request_timeout: float | None = None) -> bytes:
        query: list[tuple[str, Any]] = [("limit", limit)]
        if _continue:
            query.append(("continue", _continue))
        request = api.param_serialize(
            method="GET",
            resource_path=path,
            path_params={"namespace": namespace} if scoped else {},
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=_request_timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=data.decode("utf-8", "replace"), data=None)
        return bytes(data)

    return call


def _page(
    method: Callable[..., Any],
    token: str | None,
    policy: ListPolicy,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    wait = policy.backoff
    for attempt in range(1, policy.attempts + 1):
        kwargs: dict[str, Any] = {"limit": policy.page, "_request_timeout": policy.timeout}
        if token:
            kwargs["_continue"] = token
        try:
            data = json.loads(method(**kwargs))
            if not isinstance(data, dict):
                raise ListError(None, "the API server answered with something that is not a list")
            return data
        except ApiException as exc:
            status = exc.status if isinstance(exc.status, int) else None
            if status == 410:
                raise _Gone() from None
            if status not in RETRIABLE or attempt == policy.attempts:
                raise ListError(status, f"HTTP {status} {exc.reason or ''}".strip()) from None
            delay = min(_retry_after(exc) or wait, policy.max_wait)
        except (OSError, ValueError) as exc:  # connection refused, reset, a body that is not JSON
            if attempt == policy.attempts:
                raise ListError(None, str(exc) or type(exc).__name__) from None
            delay = wait
        except HTTPError as exc:  # urllib3's MaxRetryError, ProtocolError: not OSErrors
            if attempt == policy.attempts:
                raise ListError(None, str(exc) or type(exc).__name__) from None
            delay = wait
        log.info("list attempt %d failed, retrying in %.1fs", attempt, delay)
        sleep(delay)
        wait = min(wait * 2, policy.max_wait)
    raise ListError(None, "no attempt was made")  # pragma: no cover (attempts >= 1)


def _retry_after(exc: Any) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if isinstance(headers, Mapping) else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _object(kind: KindInfo, item: dict[str, Any]) -> KubeObject:
    meta = item.get("metadata") or {}
    body = {"apiVersion": kind.api_version, "kind": kind.kind, **item}
    if kind.kind == "Secret":  # values become digests here and go no further
        for field in ("data", "stringData"):
            values = body.get(field)
            if isinstance(values, Mapping):
                body[field] = {str(k): digest(str(v)) for k, v in values.items()}
    key = ObjectKey(kind.kind, str(meta.get("namespace") or "") if kind.namespaced else "", str(meta.get("name")))
    return KubeObject(key=key, body=body)
