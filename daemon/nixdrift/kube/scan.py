"""`nixdrift kube`'s pipeline: manifests → live objects → compare → policy → Report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nixdrift.kube import live as live_mod
from nixdrift.kube import manifests
from nixdrift.kube.compare_objects import Scope, compare_all
from nixdrift.kube.kinds import KINDS, needed_by
from nixdrift.models import Category, FlakeInfo, Generations, Report, Severity, sort_findings
from nixdrift.policy import Policy


@dataclass(frozen=True, slots=True)
class KubeOptions:
    manifests: Path
    namespace: str | None = None
    kubeconfig: str | None = None
    policy: Policy = field(default_factory=lambda: Policy(threshold=Severity.MEDIUM))
    cluster_name: str = ""  # the report's "host"; default: the API server's address
    secret_max_age_days: int | None = 90
    categories: frozenset[Category] | None = None  # None: all; else the others are left out


def now_iso(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scan(
    opts: KubeOptions,
    *,
    api: Any = None,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> Report:
    moment = now or datetime.now(UTC)
    progress(f"reading manifests in {opts.manifests}")
    declared = manifests.load(opts.manifests, namespace=opts.namespace)
    if api is None:
        from nixdrift.sinks.kube import api_client

        api = api_client(opts.kubeconfig, in_cluster_fallback=True)
    progress("listing the cluster's objects")
    kinds = KINDS if opts.categories is None else needed_by(opts.categories)
    live = live_mod.read(api, opts.namespace, kinds=kinds)
    scope = Scope(namespace=opts.namespace, now=moment, secret_max_age_days=opts.secret_max_age_days)
    result = compare_all(declared, live, scope)
    findings = opts.policy.apply(result.findings)
    categories = dict(result.categories)
    if opts.categories is not None:
        findings = tuple(f for f in findings if f.category in opts.categories)
        categories = {c: s for c, s in categories.items() if c in opts.categories}
    src = declared.source
    return Report(
        host=opts.cluster_name or live.cluster or "cluster",
        generated_at=now_iso(moment),
        flake=FlakeInfo(reference=src.directory, revision=src.revision, dirty=src.dirty),
        generations=Generations(declared=None, current=None, booted=None),
        categories=categories,
        findings=sort_findings(list(findings)),
        threshold=opts.policy.threshold,
        problems=result.problems,
    )
