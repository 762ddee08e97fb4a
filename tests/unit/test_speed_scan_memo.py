"""A scan's memo of look-ups below the root (`Root.for_scan`, issue 11): it resolves every path
as the plain root does, it never lets a read escape the root when a directory is swapped for a
link mid-scan, and it dies with the scan: the next capture sees what changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nixdrift.capture import services
from nixdrift.declared.model import DeclaredState
from nixdrift.live.services import EntryKind
from nixdrift.models import FlakeInfo
from nixdrift.rootfs import Root, UnsafeRead

SECRET = "TOPSECRET-outside-the-root-n11"


def tree(root: Path, links: dict[str, str], files: dict[str, str]) -> None:
    for host_path, text in files.items():
        path = root / host_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for host_path, target in links.items():
        path = root / host_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)


def test_a_scan_resolves_every_path_as_the_plain_root_does(tmp_path: Path) -> None:
    root = tmp_path / "root"
    chain = {f"/chain/l{i}": f"/chain/l{i + 1}" for i in range(45)}  # l5 is 40 links from l45
    tree(
        root,
        {
            "/run/current-system": "/nix/var/nix/profiles/system",
            "/nix/var/nix/profiles/system": "system-1-link",
            "/nix/var/nix/profiles/system-1-link": "/srv/gen1",
            "/etc/static": "/srv/gen1/etc",
            "/etc/systemd/system": "/etc/static/systemd/system",
            "/srv/gen1/etc/systemd/system": "../../../units",
            "/srv/units/masked.service": "/dev/null",
            "/srv/units/alias.service": "real.service",
            "/srv/up": "..",
            "/srv/top": "/",
            "/loop/a": "b",
            "/loop/b": "a",
            **chain,
            "/chain/l45/hop1": "hop2",
            "/chain/l45/hop2": "end",
        },
        {"/srv/units/real.service": "[Service]\n", "/chain/l45/end": "end\n"},
    )
    paths = [
        "/run/current-system/etc/systemd/system/real.service",
        "/etc/systemd/system/alias.service",
        "/etc/systemd/system/masked.service",
        "/etc/systemd/system/missing.service",
        "/etc/systemd/system/../system/real.service",
        "/etc/./static/systemd",
        "/srv/up/srv/units/real.service",
        "/srv/top/etc/static",
        "/srv/top",
        "/",
        "/chain/l5",  # 40 links: resolves
        "/chain/l6/x",  # 39 links, then a missing component
        "/chain/l6/hop1",  # 39 links to /chain/l45 (memoised by the path before), then 2 more: too many
        "/chain/l7/hop1",  # 38 + 2: resolves
        "/chain/l4",  # 41 links: too many
        "/chain/l0",
        "/loop/a/x",
    ]
    plain = Root.of(root)

    def answers(r: Root, order: list[str]) -> dict[str, str]:
        out = {}
        for p in order:
            try:
                out[p] = r.resolve(p)
            except OSError as exc:
                out[p] = f"error: {exc}"
        return out

    expected = answers(plain, paths)
    assert expected["/etc/systemd/system/alias.service"] == "/srv/units/real.service"
    assert expected["/chain/l5"] == "/chain/l45" and expected["/chain/l4"].startswith("error: too many levels")
    assert expected["/chain/l7/hop1"] == "/chain/l45/end"
    assert expected["/chain/l6/hop1"].startswith("error: too many levels")
    assert expected["/loop/a/x"].startswith("error: too many levels")
    # in both orders, so that one path's walk starts from another's memoised prefix
    for order in (paths, paths[::-1], sorted(paths, key=len)):
        scan = plain.for_scan()
        assert answers(scan, order) == expected
        assert answers(scan, order) == expected  # and again, every answer now from the memo
    assert plain.for_scan() == plain  # the memo is no part of the root's identity


def test_a_directory_swapped_for_an_escaping_link_mid_scan_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    tree(root, {}, {"/etc/app/app.conf": "inside\n"})
    tree(outside, {}, {"/app.conf": SECRET})
    scan = Root.of(root).for_scan()
    assert scan.read_text("/etc/app/app.conf") == "inside\n"  # /etc/app is now in the memo
    os.rename(root / "etc/app", root / "etc/app.old")
    (root / "etc/app").symlink_to(outside)  # the path the memo holds now leads out of the root
    with pytest.raises(UnsafeRead, match="outside the root") as refused:
        scan.read_text("/etc/app/app.conf")
    assert SECRET not in str(refused.value)


def declared() -> DeclaredState:
    return DeclaredState.from_json("web1", FlakeInfo("path:/flake"), {"toplevel": "/nix/store/" + "a" * 32 + "-sys"})


def test_the_memo_dies_with_the_capture(tmp_path: Path) -> None:
    """The daemon captures the same root again and again: a runtime mask made between two captures,
    behind a directory link the first capture resolved, is seen by the second."""
    root = tmp_path / "root"
    toplevel = declared().toplevel
    assert toplevel is not None
    tree(
        root,
        {
            f"{toplevel}/etc": "/etc/static",
            "/etc/static": "/srv/etc1",
            "/etc/systemd/system": "/etc/static/systemd/system",
            "/run/systemd/system": "/srv/runtime1",
        },
        {"/srv/etc1/systemd/system/sshd.service": "[Service]\nExecStart=/bin/sshd\n", "/.nixdrift/units.json": "[]"},
    )
    (root / "srv/runtime1").mkdir()
    (root / "srv/runtime2").mkdir()
    (root / "srv/runtime2/sshd.service").symlink_to("/dev/null")
    plain = Root.of(root)

    def runtime_masks() -> list[str]:
        section = services.capture(plain, declared())
        assert section.data is not None, section.unavailable
        closure = [e.rel for e in section.data.closure.entries if e.kind is EntryKind.UNIT]
        assert closure == ["sshd.service"]
        return [e.host_path for e in section.data.writable_entries(EntryKind.MASK)]

    assert runtime_masks() == []
    (root / "run/systemd/system").unlink()
    (root / "run/systemd/system").symlink_to("/srv/runtime2")
    assert runtime_masks() == ["/run/systemd/system/sshd.service"]


@pytest.mark.nix
def test_store_paths_are_read_below_the_root_first_then_from_the_local_store(tmp_path: Path) -> None:
    """A store path absent below the root is read from this machine's /nix/store (and, within a
    scan, so is everything it holds); one the root holds is read there."""
    source = tmp_path / "n11-scan-memo-src"
    tree(source, {"/sub/link.conf": "file.conf"}, {"/sub/file.conf": "from the local store\n"})
    added = subprocess.run(["nix-store", "--add", str(source)], capture_output=True, text=True, check=True)
    store_path = added.stdout.strip()
    assert store_path.startswith("/nix/store/")
    bare = tmp_path / "bare"  # holds none of it
    tree(bare, {"/run/current-system": store_path}, {})
    copied = tmp_path / "copied"  # holds its own copy of the store path
    tree(copied, {"/run/current-system": store_path, f"{store_path}/sub/link.conf": "file.conf"}, {})
    tree(copied, {}, {f"{store_path}/sub/file.conf": "from below the root\n"})
    for root, expected in ((bare, "from the local store\n"), (copied, "from below the root\n")):
        plain = Root.of(root)
        scan = plain.for_scan()
        for r in (plain, scan, scan):
            assert r.read_text("/run/current-system/sub/link.conf") == expected
            assert r.read_text(f"{store_path}/sub/file.conf") == expected
            assert r.resolve("/run/current-system/sub/link.conf") == f"{store_path}/sub/file.conf"
