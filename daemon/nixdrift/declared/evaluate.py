"""Evaluate the host's flake into a DeclaredState, cached by the flake's identity.

The identity of a local git flake is the index (blob hashes of tracked files) plus the diff of
the working tree: exactly what nix copies, so an edit in a dirty tree is a new identity and an
unchanged tree is never evaluated twice. A local non-git directory is hashed file by file; any
other reference (github:, a registry name) is identified by `nix flake metadata`'s locked hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nixdrift import __version__
from nixdrift.declared import gitindex, nix
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import EvaluationError, ToolMissingError
from nixdrift.flakeref import FlakeRef
from nixdrift.models import FlakeInfo
from nixdrift.process import run, which

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/nixdrift, else ~/.cache/nixdrift: `answer.cache_path`, which the quick path
    reads (not imported here: capture and compare reach this module, and answer reaches the
    renderers; tests/unit/test_quick.py keeps the two equal)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nixdrift"


@functools.cache
def projection_text() -> str:
    return resources.files("nixdrift.declared").joinpath("projection.nix").read_text()


@dataclass(frozen=True, slots=True)
class _Local:
    directory: Path
    git_top: Path | None


def _local_dir(ref: str) -> Path | None:
    """The local tree nix copies for this flake (with `?dir=`, the whole tree), when it exists."""
    path = FlakeRef.parse(ref).local_source()
    return path.resolve() if path is not None and path.exists() else None


def _git(directory: Path, *args: str) -> str:
    return run(["git", "--no-optional-locks", "-C", str(directory), *args], timeout=120).stdout


def _status_entries(out: str) -> tuple[str | None, list[tuple[str, str]]]:
    """HEAD's commit (None before the first one) and (entry line, path) for every tracked change,
    from `git status --porcelain=v2 --branch -z`."""
    rev: str | None = None
    entries: list[tuple[str, str]] = []
    fields = iter(out.split("\0"))
    for field in fields:
        if field.startswith("# branch.oid "):
            oid = field.removeprefix("# branch.oid ")
            rev = None if oid == "(initial)" else oid
        elif field.startswith(("1 ", "u ")):
            entries.append((field, field.split(" ", 8 if field[0] == "1" else 10)[-1]))
        elif field.startswith("2 "):
            entries.append((field, field.split(" ", 9)[-1]))
            next(fields, None)  # the rename's original path
    return rev, entries


def _git_identity(top: Path) -> tuple[str, str | None, bool]:
    """One `git status`: HEAD plus every staged or unstaged change to a tracked file, with the
    working-tree content of each (what nix copies from a dirty tree)."""
    out = _git(top, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=no")
    rev, entries = _status_entries(out)
    digest = hashlib.sha256(f"{rev}\0".encode())
    for line, rel in sorted(entries):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(hashlib.sha256((top / rel).read_bytes()).digest())
        except OSError:
            digest.update(b"<absent>")
    return "git:" + digest.hexdigest(), rev, bool(entries) or rev is None


def _tree_identity(directory: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            digest.update(os.fsencode(path.relative_to(directory)) + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<unreadable>")
    return "tree:" + digest.hexdigest()


def flake_info(ref: str) -> FlakeInfo:
    """Identify the flake without evaluating it (cheap for local trees)."""
    directory = _local_dir(ref)
    if directory is not None:
        flake_dir = directory / FlakeRef.parse(ref).subdir
        if not (flake_dir / "flake.nix").exists():
            raise EvaluationError(f"{flake_dir} holds no flake.nix")
        if which("git") and (top := _git_top(directory)) is not None:
            identity, rev, dirty = _git_identity(top)
            return FlakeInfo(reference=ref, revision=rev, dirty=dirty, identity=identity)
        return FlakeInfo(reference=ref, identity=_tree_identity(directory))
    meta = nix.flake_metadata(ref)
    locked = meta.get("locked") or {}
    rev = meta.get("revision") or locked.get("rev")
    identity = "nar:" + str(locked.get("narHash") or meta.get("url") or ref)
    return FlakeInfo(reference=ref, revision=rev, dirty=rev is None, identity=identity)


def _git_top(directory: Path) -> Path | None:
    """The work tree holding directory: found by looking for .git upwards (no process)."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _cache_key(ref: str, identity: str, host: str) -> str:
    projection = hashlib.sha256(projection_text().encode()).hexdigest()
    key = json.dumps([identity, ref, host, projection, __version__])
    return hashlib.sha256(key.encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache is a slower run, not a failure
        log.warning("cannot write evaluation cache %s: %s", path, exc)


def _hosts(ref: str) -> list[str]:
    names = nix.eval_json(f"{ref}#nixosConfigurations", apply="builtins.attrNames")
    return [str(n) for n in names] if isinstance(names, list) else []


def evaluate_raw(ref: str, host: str) -> Any:
    installable = f"{ref}#nixosConfigurations.{nix.attr_name(host)}.config"
    try:
        return nix.eval_json(installable, apply=projection_text())
    except EvaluationError:
        try:
            hosts = _hosts(ref)
        except EvaluationError:
            raise
        if host not in hosts:
            present = ", ".join(sorted(hosts)) or "none"
            raise EvaluationError(
                f"host {host!r} is not in {ref}'s nixosConfigurations (present: {present}); pass --host"
            ) from None
        raise


def fast_identity(ref: str) -> str | None:
    """The flake's identity without a process when it is a plain local git checkout, else None."""
    directory = _local_dir(ref)
    top = _git_top(directory) if directory is not None else None
    return gitindex.identity(top) if top is not None else None


def evaluate(ref: str, host: str, cache_dir: Path | None) -> DeclaredState:
    """The declared state of `host` in flake `ref`; `cache_dir=None` skips the cache.

    A cache hit costs no process at all for a local git flake: the identity comes from the index
    (gitindex), and the revision and dirtiness, which that identity determines, from the entry.
    """
    if which("nix") is None:
        raise ToolMissingError("nix is not installed or not on PATH (nixdrift needs `nix eval`)")
    fast = fast_identity(ref) if cache_dir is not None else None
    info = None if fast is not None else flake_info(ref)
    identity = fast if fast is not None else info.identity if info is not None else ""
    cache_path = cache_dir / f"{_cache_key(ref, identity, host)}.json" if cache_dir is not None else None
    cached = _read_cache(cache_path) if cache_path is not None else None
    if cached is not None and "dirty" in cached:
        log.debug("evaluation cache hit: %s", cache_path)
        info = FlakeInfo(ref, cached.get("revision"), bool(cached["dirty"]), identity)
        raw = cached.get("declared")
    else:
        info = info or flake_info(ref)
        log.info("evaluating %s#nixosConfigurations.%s", ref, host)
        raw = evaluate_raw(ref, host)
        if cache_path is not None:
            entry = {"declared": raw, "identity": identity, "host": host}
            _write_cache(cache_path, entry | {"revision": info.revision, "dirty": info.dirty})
    if not isinstance(raw, dict):
        raise EvaluationError(f"the projection of {ref}#{host} is not an attribute set")
    return DeclaredState.from_json(host, info, raw)
