"""Packages as records: the system's store paths, the profiles and their elements, and the pure
helpers that name store paths and decide whether a declared package is among them."""

from __future__ import annotations

import enum
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nixdrift.declared.model import DeclaredPackage

_STORE_PATH = re.compile(r"/nix/store/([0-9a-z]{32})-([^/]+)")


def store_path_of(path: str) -> str | None:
    """The store path (`/nix/store/<hash>-<name>`) a path lies in, or None outside the store."""
    match = _STORE_PATH.match(path)
    return match.group(0) if match else None


def store_name(store_path: str) -> str:
    """The name part of a store path (`hello-1.0` for `/nix/store/<hash>-hello-1.0`)."""
    match = _STORE_PATH.match(store_path)
    return match.group(2) if match else store_path.rsplit("/", 1)[-1]


class ProfileTool(enum.Enum):
    NIX_ENV = "nix-env"  # manifest.nix
    NIX_PROFILE = "nix profile"  # manifest.json


@dataclass(frozen=True, slots=True)
class ProfileElement:
    """One package installed in a profile."""

    name: str  # nix-env: the derivation name ("hello-1.0"); nix profile: the element's name
    pname: str
    version: str
    store_paths: tuple[str, ...]
    tool: ProfileTool
    active: bool = True
    attr_path: str = ""  # nix profile: the flake output attribute it came from
    url: str = ""  # nix profile: the locked flake reference
    remove_key: str = ""  # what `nix-env -e` / `nix profile remove` accepts to remove it


@dataclass(frozen=True, slots=True)
class Profile:
    path: str  # the profile link itself (not its -N-link), as the host names it
    owner: str | None  # the user whose profile it is; None for a system-wide profile
    generation: str  # the store path the profile points at
    tool: ProfileTool
    elements: tuple[ProfileElement, ...]

    @property
    def is_main(self) -> bool:
        """The user's default profile (what `nix-env -i` and `nix profile install` use)."""
        return self.owner is not None and posixpath.basename(self.path) == "profile"


@dataclass(frozen=True, slots=True)
class LivePackages:
    current_system: str | None  # store path of /run/current-system, None when unreadable
    system_paths: frozenset[str] | None  # store paths the system environments link to; None when unreadable
    system_complete: bool  # every directory was walked (a declared path absent from system_paths is missing)
    profiles: tuple[Profile, ...]


class SeenPaths:
    """Store paths seen so far, indexed so that a declared package is looked up in O(1)."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.names: set[str] = set()

    def add(self, target: str) -> None:
        path = store_path_of(target)
        if path is None or path in self.paths:
            return
        self.paths.add(path)
        name = store_name(path)
        self.names.add(name)
        base, _, output = name.rpartition("-")
        if base and output.isalpha():
            self.names.add(base)  # `curl-8.4.0-bin`: another output of `curl-8.4.0`

    def has(self, declared: DeclaredPackage) -> bool:
        return package_present(declared, self.paths, self.names)


def package_present(declared: DeclaredPackage, paths: frozenset[str] | set[str], names: set[str]) -> bool:
    """Is a declared package among these store paths? By path, or by name when another output of it
    was linked (`names` holds each path's name and, for `<name>-<output>`, `<name>` too)."""
    if declared.path is None:
        return True  # not a derivation: nothing to look for
    return declared.path in paths or (declared.name or store_name(declared.path)) in names


def path_names(paths: Iterable[str]) -> set[str]:
    """The names `package_present` matches: each store path's name, and `<name>` for `<name>-<output>`."""
    seen = SeenPaths()
    for path in paths:
        seen.add(path)
    return seen.names
