"""Records of `nixdrift kube`: one object (declared or live), the declared set and the live set.

Object bodies are the API's own JSON (camelCase, as manifests write it) held read-only: they are
never mutated after parsing. A live Secret's values are replaced by digests where it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    kind: str
    namespace: str  # "" for a cluster-scoped kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def id_part(self) -> str:
        """The object's part of a finding id: namespace/Kind/name (cluster-scoped: _cluster)."""
        return f"{self.namespace or '_cluster'}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class KubeObject:
    key: ObjectKey
    body: Mapping[str, Any]
    source: str = ""  # the manifest file it came from (declared) or "" (live)

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, Mapping) else {}


@dataclass(frozen=True, slots=True)
class ManifestSource:
    """Where the declaration came from and its git state (uncommitted manifests are drift)."""

    directory: str
    rendered_with: str  # "files" or "kubectl kustomize"
    revision: str | None = None
    dirty: bool = False
    modified: tuple[str, ...] = ()  # tracked manifests with uncommitted changes
    untracked: tuple[str, ...] = ()
    git_problem: str | None = None  # why the git state is unknown (not a repository, git missing)


@dataclass(frozen=True, slots=True)
class Declared:
    objects: Mapping[ObjectKey, KubeObject]
    source: ManifestSource
    skipped: tuple[str, ...] = ()  # documents of kinds nixdrift does not compare


@dataclass(frozen=True, slots=True)
class Live:
    """Every listed object by key; `unavailable` holds each kind that could not be listed, with why."""

    objects: Mapping[ObjectKey, KubeObject]
    unavailable: Mapping[str, str] = field(default_factory=dict)
    cluster: str = ""  # the API server's URL, for the report
    listed: frozenset[str] | None = None  # the kinds asked for (None: all); others are not judged
