"""One flake-reference parser for evaluation, the repo category and the daemon.

The table holds the cases where the three old parsers disagreed: `?dir=` (evaluation and the
daemon dropped it, so a flake in a subdirectory "held no flake.nix"), percent-decoding (only the
repo category decoded) and `#` (a fragment became part of the path everywhere but in the repo
category's bare paths).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nixdrift.capture import repo
from nixdrift.declared.evaluate import flake_info
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import EvaluationError
from nixdrift.flakeref import FlakeKind, FlakeRef
from nixdrift.models import Category, FlakeInfo
from nixdrift.rootfs import Root
from nixdrift.service import loop

# text -> kind, location, subdir, params, fragment, local source, local flake dir
CASES: list[tuple[str, FlakeKind, str, str, tuple[tuple[str, str], ...], str, str | None, str | None]] = [
    ("/etc/nixos", FlakeKind.PATH, "/etc/nixos", "", (), "", "/etc/nixos", "/etc/nixos"),
    ("/srv/flake#web", FlakeKind.PATH, "/srv/flake", "", (), "web", "/srv/flake", "/srv/flake"),
    ("/srv/flake?dir=hosts", FlakeKind.PATH, "/srv/flake", "hosts", (), "", "/srv/flake", "/srv/flake/hosts"),
    # a bare path is taken as written, as Nix does
    ("/srv/my%20flake", FlakeKind.PATH, "/srv/my%20flake", "", (), "", "/srv/my%20flake", "/srv/my%20flake"),
    (
        "path:/srv/my%20flake?dir=hosts/web#nixosConfigurations.web",
        FlakeKind.PATH,
        "/srv/my flake",
        "hosts/web",
        (),
        "nixosConfigurations.web",
        "/srv/my flake",
        "/srv/my flake/hosts/web",
    ),
    ("path:/srv/flake#a%2Eb", FlakeKind.PATH, "/srv/flake", "", (), "a.b", "/srv/flake", "/srv/flake"),
    (
        "git+file:///srv/flake?ref=main&dir=sub&rev=abc#host",
        FlakeKind.GIT_FILE,
        "/srv/flake",
        "sub",
        (("ref", "main"), ("rev", "abc")),
        "host",
        "/srv/flake",
        "/srv/flake/sub",
    ),
    ("git+file:/srv/flake", FlakeKind.GIT_FILE, "/srv/flake", "", (), "", "/srv/flake", "/srv/flake"),
    ("git+file:///srv/a%23b", FlakeKind.GIT_FILE, "/srv/a#b", "", (), "", "/srv/a#b", "/srv/a#b"),
    ("github:owner/repo/main?dir=nix#web", FlakeKind.GITHUB, "owner/repo/main", "nix", (), "web", None, None),
    ("nixpkgs", FlakeKind.INDIRECT, "nixpkgs", "", (), "", None, None),
    ("flake:nixpkgs", FlakeKind.INDIRECT, "nixpkgs", "", (), "", None, None),
    (
        "https://example.org/f.tar.gz?narHash=x",
        FlakeKind.REMOTE,
        "https://example.org/f.tar.gz",
        "",
        (("narHash", "x"),),
        "",
        None,
        None,
    ),
    ("git+https://example.org/r.git?dir=a", FlakeKind.REMOTE, "git+https://example.org/r.git", "a", (), "", None, None),
]


@pytest.mark.parametrize(("text", "kind", "location", "subdir", "params", "fragment", "source", "flake_dir"), CASES)
def test_parse(
    text: str,
    kind: FlakeKind,
    location: str,
    subdir: str,
    params: tuple[tuple[str, str], ...],
    fragment: str,
    source: str | None,
    flake_dir: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no directory named like a registry flake here
    ref = FlakeRef.parse(text)
    assert (ref.kind, ref.location, ref.subdir, ref.params, ref.fragment) == (kind, location, subdir, params, fragment)
    assert ref.local_source() == (Path(source) if source else None)
    assert ref.local_flake_dir() == (Path(flake_dir) if flake_dir else None)
    assert ref.text == text
    assert ref.without_fragment == text.partition("#")[0]


def test_home_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert FlakeRef.parse("~/flake?dir=x").local_flake_dir() == tmp_path / "flake" / "x"
    assert FlakeRef.parse("./flake#h").local_source() == Path("flake")
    assert FlakeRef.parse(".").local_source() == Path(".")
    # a bare word is a registry name, unless a directory of that name is here
    assert FlakeRef.parse("myflake").local_source() is None
    (tmp_path / "myflake").mkdir()
    assert FlakeRef.parse("myflake").local_source() == Path("myflake")
    assert FlakeRef.parse("flake:myflake").local_source() is None


# -- the three users agree ---------------------------------------------------------------------


@pytest.fixture
def flake_in_subdir(tmp_path: Path) -> Path:
    """A git checkout whose flake.nix sits in hosts/ (a flake referenced with ?dir=hosts)."""
    top = tmp_path / "my config"
    (top / "hosts").mkdir(parents=True)
    (top / "hosts" / "flake.nix").write_text("{ outputs = _: { }; }\n")
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    return top


def test_evaluation_finds_flake_nix_below_dir(flake_in_subdir: Path) -> None:
    quoted = str(flake_in_subdir).replace(" ", "%20")
    for text in (f"path:{quoted}?dir=hosts", f"git+file://{quoted}?dir=hosts#web", f"{flake_in_subdir}?dir=hosts"):
        info = flake_info(text)
        assert info.identity.startswith("git:"), text  # identified locally, without nix
        assert info.dirty  # no commit yet
    with pytest.raises(EvaluationError, match=r"holds no flake\.nix"):
        flake_info(f"path:{quoted}")  # the top holds none


def test_repo_category_and_daemon_read_the_same_tree(flake_in_subdir: Path) -> None:
    quoted = str(flake_in_subdir).replace(" ", "%20")
    text = f"git+file://{quoted}?dir=hosts#web"
    section = repo.capture(Root(), DeclaredState.from_json("web", FlakeInfo(reference=text), {}))
    assert section.category is Category.REPO
    assert section.data is not None, section.unavailable
    assert Path(section.data.top) == flake_in_subdir.resolve()
    assert Path(section.data.flake_dir) == flake_in_subdir.resolve() / "hosts"
    # the daemon watches the whole tree nix copies
    assert loop._local_flake(text) == flake_in_subdir.resolve()
    assert loop._local_flake(f"{flake_in_subdir}#web") == flake_in_subdir.resolve()
    assert loop._local_flake("github:owner/repo") is None
