"""The declared side: a directory of manifests, or a kustomization rendered by `kubectl kustomize`.

Multi-document YAML files, JSON files and `List` kinds are read; a document of a kind nixdrift does
not compare is recorded as skipped (the report says so). The directory's git state is read too:
manifests the cluster is checked against but nobody committed are themselves drift.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nixdrift.errors import NixdriftError, ToolMissingError
from nixdrift.kube.convert import served
from nixdrift.kube.kinds import info
from nixdrift.kube.model import Declared, KubeObject, ManifestSource, ObjectKey
from nixdrift.process import run

KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(NixdriftError):
    """The manifests cannot be read: the declaration is unknown, so nothing can be judged."""


def load(directory: Path, *, namespace: str | None = None) -> Declared:
    """Every object the directory declares, keyed by kind, namespace and name.

    `namespace` is where a namespaced object without `metadata.namespace` lands (as `kubectl apply
    -n` would put it; default "default")."""
    if not directory.is_dir():
        raise ManifestError(f"--manifests {directory} is not a directory")
    kustomization = next((directory / n for n in KUSTOMIZATIONS if (directory / n).is_file()), None)
    documents: list[tuple[str, Any]] = []
    if kustomization is not None:
        documents = [(str(kustomization), d) for d in _parse(render_kustomization(directory), str(kustomization))]
        how = "kubectl kustomize"
    else:
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in SUFFIXES):
            if any(part.startswith(".") for part in path.relative_to(directory).parts):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"cannot read manifest {path}: {exc}") from None
            documents.extend((str(path), d) for d in _parse(text, str(path)))
        how = "files"
    objects: dict[ObjectKey, KubeObject] = {}
    skipped: list[str] = []
    for where, doc in documents:
        for obj in _items(doc):
            key = _key(obj, where, namespace or "default")
            if key is None:
                skipped.append(f"{where}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}")
                continue
            if key in objects:
                raise ManifestError(f"{key} is declared twice: {objects[key].source} and {where}")
            body = served(obj)  # an autoscaling/v1 HPA as the server returns it (v2)
            if key.namespace:
                body["metadata"] = {**(obj.get("metadata") or {}), "namespace": key.namespace}
            objects[key] = KubeObject(key=key, body=body, source=where)
    return Declared(objects=objects, source=git_state(directory, how), skipped=tuple(sorted(skipped)))


def render_kustomization(directory: Path) -> str:
    try:
        return run(["kubectl", "kustomize", str(directory)], timeout=120).stdout
    except ToolMissingError:
        raise ManifestError(
            f"{directory} is a kustomization and rendering it needs kubectl (Debian: kubernetes-client); "
            "install it, or point --manifests at a directory of plain manifests"
        ) from None


def _parse(text: str, where: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{where}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def _items(doc: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(doc, Mapping):
        return
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _items(item)
        return
    yield doc


def _key(obj: Mapping[str, Any], where: str, namespace: str) -> ObjectKey | None:
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(kind, str) or not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: a document without kind or metadata.name")
    known = info(kind)
    if known is None:
        return None
    ns = ""
    if known.namespaced:
        declared_ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        ns = declared_ns if isinstance(declared_ns, str) and declared_ns else namespace
    return ObjectKey(kind, ns, name)


def git_state(directory: Path, how: str) -> ManifestSource:
    """The directory's revision and its uncommitted manifests (`git status` limited to it)."""
    base = ManifestSource(directory=str(directory), rendered_with=how)
    try:
        top = run(["git", "-C", str(directory), "rev-parse", "--show-toplevel"], check=False, timeout=30)
        if top.returncode != 0:
            return _with(base, git_problem="not a git repository")
        rev = run(["git", "-C", str(directory), "rev-parse", "HEAD"], check=False, timeout=30)
        status = run(
            ["git", "-C", str(directory), "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", "."],
            timeout=60,
        )
    except NixdriftError as exc:
        return _with(base, git_problem=str(exc))
    modified: list[str] = []
    untracked: list[str] = []
    for entry in status.stdout.split("\0"):
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        (untracked if code == "??" else modified).append(path)
    return ManifestSource(
        directory=str(directory),
        rendered_with=how,
        revision=rev.stdout.strip() or None if rev.returncode == 0 else None,
        dirty=bool(modified or untracked),
        modified=tuple(sorted(modified)),
        untracked=tuple(sorted(untracked)),
    )


def _with(base: ManifestSource, **changes: Any) -> ManifestSource:
    from dataclasses import replace

    return replace(base, **changes)
