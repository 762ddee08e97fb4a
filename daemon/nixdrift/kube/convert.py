"""Manifests written in an older API version, in the shape the API server serves them.

The server stores one version of each kind and converts what it is given: an `autoscaling/v1`
HorizontalPodAutoscaler is read back through `autoscaling/v2` (the version nixdrift lists) with
`targetCPUUtilizationPercentage: N` as a `Resource` metric on cpu with an `Utilization` target of
N. Comparing the v1 manifest as written would report that field missing on every clean cluster.
Pure: a manifest in, the served shape out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HPA_V1 = "autoscaling/v1"
HPA_V2 = "autoscaling/v2"


def served(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` as the server returns it in the version nixdrift lists (unchanged when it already is)."""
    if obj.get("kind") == "HorizontalPodAutoscaler" and obj.get("apiVersion") == HPA_V1:
        return _hpa_v1_to_v2(obj)
    return dict(obj)


def _hpa_v1_to_v2(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {**obj, "apiVersion": HPA_V2}
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return out
    spec2 = {k: v for k, v in spec.items() if k != "targetCPUUtilizationPercentage"}
    cpu = spec.get("targetCPUUtilizationPercentage")
    if cpu is not None:  # unset: the server's default (80 % cpu), which the manifest does not set
        spec2["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}},
            }
        ]
    out["spec"] = spec2
    return out
