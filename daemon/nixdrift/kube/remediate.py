"""Automatic revert of low-severity cluster drift, and nothing else.

Only a finding whose severity is low and whose fix is marked safe (a replica count, a label: its
manifest is known) is reverted: a server-side apply of the object's manifest with nixdrift's own
field manager, as a dry run first (the API server validates and admission webhooks run), then for
real, then the cluster is checked again and what is still there is reported. Everything else
stays a finding with the `kubectl` command a person would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nixdrift.kube import manifests
from nixdrift.kube.kinds import info
from nixdrift.kube.model import KubeObject
from nixdrift.models import Report, Severity

FIELD_MANAGER = "nixdrift-remediate"
APPLY = "application/apply-patch+yaml"


@dataclass(frozen=True, slots=True)
class Outcome:
    report: Report  # the cluster checked again after the reverts
    reverted: tuple[str, ...]  # finding ids applied for
    refused: tuple[tuple[str, str], ...]  # (finding id, why the dry run or apply failed)
    remaining: tuple[str, ...]  # reverted ids still found by the re-check

    def lines(self) -> list[str]:
        out = [f"reverted {fid} by server-side apply" for fid in self.reverted if fid not in self.remaining]
        out += [f"could not revert {fid}: {why}" for fid, why in self.refused]
        out += [f"{fid} is still there after the apply" for fid in self.remaining]
        return out


def candidates(report: Report) -> list[tuple[str, str]]:
    """(finding id, object) of every finding that may be reverted automatically."""
    return [
        (f.id, f.evidence["object"])
        for f in report.active
        if f.severity <= Severity.LOW and f.fix.safe and "object" in f.evidence and f.evidence.get("manifest")
    ]


def apply(api: Any, obj: KubeObject, *, dry_run: bool, timeout: float = 30.0) -> None:
    from kubernetes import client

    kind = info(obj.key.kind)
    if kind is None:
        raise ValueError(f"{obj.key.kind} is not a kind nixdrift reverts")
    target = getattr(client, kind.api_class)(api)
    kwargs: dict[str, Any] = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": APPLY,
        "_request_timeout": timeout,
    }
    if dry_run:
        kwargs["dry_run"] = "All"
    body = dict(obj.body)
    if kind.namespaced:
        getattr(target, f"patch_namespaced_{kind.snake}")(obj.key.name, obj.key.namespace, body, **kwargs)
    else:
        getattr(target, f"patch_{kind.snake}")(obj.key.name, body, **kwargs)


def remediate_low(report: Report, opts: Any, api: Any) -> Outcome:
    from kubernetes.client.exceptions import ApiException

    from nixdrift.kube.scan import scan

    todo = candidates(report)
    if not todo:
        return Outcome(report=report, reverted=(), refused=(), remaining=())
    declared = manifests.load(opts.manifests, namespace=opts.namespace)
    by_name = {str(k): o for k, o in declared.objects.items()}
    reverted: list[str] = []
    refused: list[tuple[str, str]] = []
    done: set[str] = set()
    for fid, name in todo:
        obj = by_name.get(name)
        if obj is None:
            refused.append((fid, "its manifest is gone"))
            continue
        if name in done:
            reverted.append(fid)
            continue
        try:
            apply(api, obj, dry_run=True)
            apply(api, obj, dry_run=False)
        except (ApiException, OSError, ValueError) as exc:
            refused.append((fid, f"HTTP {getattr(exc, 'status', '')} {getattr(exc, 'reason', exc)}".strip()))
            continue
        done.add(name)
        reverted.append(fid)
    after = scan(opts, api=api)
    still = {f.id for f in after.active}
    return Outcome(
        report=after,
        reverted=tuple(reverted),
        refused=tuple(refused),
        remaining=tuple(fid for fid in reverted if fid in still),
    )
