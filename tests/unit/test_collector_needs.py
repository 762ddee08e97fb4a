"""Collectors take only what they read of the declared state (capture/needs.py), not DeclaredState.

The signature says what a collector depends on, and any small record with those attributes runs
it: these tests run collectors on fixture roots with such records, never a DeclaredState.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixdrift.capture import generation, network, repo
from nixdrift.models import FlakeInfo
from nixdrift.rootfs import Root

CAPTURE_DIR = Path(__file__).resolve().parents[2] / "daemon" / "nixdrift" / "capture"


@pytest.mark.parametrize("path", sorted(CAPTURE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_collector_names_the_whole_declared_state(path: Path) -> None:
    tree = ast.parse(path.read_text())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    used |= {  # annotations written as strings too
        ast.unparse(a)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        for a in (*(x.annotation for x in (*f.args.args, *f.args.kwonlyargs)), f.returns)
        if a is not None
    }
    assert not {u for u in used if "DeclaredState" in u}


@dataclass(frozen=True, slots=True)
class OnlyToplevel:
    toplevel: str | None


@dataclass(frozen=True, slots=True)
class OnlyFlake:
    flake: FlakeInfo


def test_generation_reads_only_the_toplevel(tmp_path: Path) -> None:
    store = "/nix/store/" + "a" * 32 + "-nixos-system-web"
    (tmp_path / "nix/store").mkdir(parents=True)
    (tmp_path / store.lstrip("/")).mkdir()
    (tmp_path / "run").mkdir()
    os.symlink(store, tmp_path / "run/current-system")
    section = generation.capture(Root.of(tmp_path), OnlyToplevel(store))
    assert section.data is not None, section.unavailable
    assert section.data.current == store
    assert section.data.declared_built
    unset = generation.capture(Root.of(tmp_path), OnlyToplevel(None))
    assert unset.unavailable is not None and "declares no system.build.toplevel" in unset.unavailable


def test_network_needs_nothing_declared(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("web\n")
    (tmp_path / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    section = network.capture(Root.of(tmp_path), None)
    assert section.data is not None, section.unavailable
    assert (section.data.hostname_file, section.data.nameservers) == ("web", ("192.0.2.53",))


def test_repo_reads_only_the_flake_reference(tmp_path: Path) -> None:
    section = repo.capture(Root(), OnlyFlake(FlakeInfo(reference="github:owner/repo")))
    assert section.unavailable == "the flake 'github:owner/repo' is not a local checkout"
