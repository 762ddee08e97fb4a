"""A flake reference, parsed once (the way Nix's flakeref.cc reads one).

Evaluation (is the flake a local tree, and which), the repo category (which checkout to inspect)
and the daemon (which tree to watch) all ask the same questions of `--flake`; they used to parse it
three ways and disagreed on `?dir=`, percent-decoding and `#`. The forms:

- `path:/dir`, `git+file:///dir`, `git+file:/dir`: URLs; the path is percent-decoded.
- `/dir`, `./dir`, `../dir`, `~/dir`: bare paths; taken as written (Nix does not decode them).
- `github:owner/repo[/ref]`, `https://...`, `git+https://...`: remote; no local tree.
- `nixpkgs`, `flake:nixpkgs`: a registry name (a bare word naming an existing directory is a path,
  see `local_source`).

Every form may carry `?key=value&...` (`dir` is the flake's subdirectory in the tree) and a
`#fragment` (an attribute path, percent-decoded) after it.

Parsing does no I/O; only `local_source` of a bare word asks whether such a directory exists.
"""

from __future__ import annotations

import enum
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path


class FlakeKind(enum.Enum):
    PATH = "path"  # path:... or a bare path
    GIT_FILE = "git+file"  # a local git checkout
    GITHUB = "github"
    INDIRECT = "indirect"  # a registry name: nixpkgs, flake:nixpkgs (or a directory of that name)
    REMOTE = "remote"  # any other URL: https, git+https, gitlab, sourcehut, tarballs


# URL scheme prefixes of local trees, longest first (`git+file://` before `git+file:`)
_LOCAL_SCHEMES = (("git+file://", FlakeKind.GIT_FILE), ("git+file:", FlakeKind.GIT_FILE), ("path:", FlakeKind.PATH))
_PATH_STARTS = ("/", "./", "../", "~")


@dataclass(frozen=True, slots=True)
class FlakeRef:
    text: str  # as given
    kind: FlakeKind
    location: str  # PATH, GIT_FILE: the tree's path; GITHUB: owner/repo[/ref]; else the URL or name
    subdir: str = ""  # ?dir=: where flake.nix sits inside the tree
    params: tuple[tuple[str, str], ...] = ()  # the query's other parameters (rev, ref, ...), in order
    fragment: str = ""  # after '#', percent-decoded: an attribute path

    @classmethod
    def parse(cls, text: str) -> FlakeRef:
        body, hash_mark, raw_fragment = text.partition("#")
        fragment = urllib.parse.unquote(raw_fragment) if hash_mark else ""
        base, _, query = body.partition("?")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        subdir = next((v for k, v in reversed(pairs) if k == "dir"), "")
        params = tuple((k, v) for k, v in pairs if k != "dir")
        kind, location = cls._kind_of(base)
        return cls(text, kind, location, subdir, params, fragment)

    @staticmethod
    def _kind_of(base: str) -> tuple[FlakeKind, str]:
        for prefix, kind in _LOCAL_SCHEMES:
            if base.startswith(prefix):
                return kind, urllib.parse.unquote(base[len(prefix) :])
        if base.startswith(_PATH_STARTS) or base in (".", ".."):
            return FlakeKind.PATH, base  # a bare path: not decoded (as Nix)
        if base.startswith("github:"):
            return FlakeKind.GITHUB, base.removeprefix("github:")
        if base.startswith("flake:"):
            return FlakeKind.INDIRECT, base.removeprefix("flake:")
        if ":" in base:
            return FlakeKind.REMOTE, base
        return FlakeKind.INDIRECT, base

    @property
    def is_local(self) -> bool:
        """Certainly a local tree (a bare word may still be one: see `local_source`)."""
        return self.kind in (FlakeKind.PATH, FlakeKind.GIT_FILE)

    @property
    def without_fragment(self) -> str:
        """The reference as given, minus its `#fragment`."""
        return self.text.partition("#")[0]

    def local_source(self) -> Path | None:
        """The tree Nix copies for a local flake (the whole tree, also with `?dir=`), `~` expanded;
        None for a remote or registry flake. A bare word is a path when such a directory exists."""
        if self.is_local:
            return Path(self.location).expanduser()
        if self.kind is FlakeKind.INDIRECT and not self.text.startswith("flake:") and os.path.isdir(self.location):
            return Path(self.location)
        return None

    def local_flake_dir(self) -> Path | None:
        """The directory holding flake.nix: the local tree joined with `?dir=`."""
        source = self.local_source()
        return source / self.subdir if source is not None and self.subdir else source
