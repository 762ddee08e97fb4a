"""`nixdrift check --root` on a fixture host with one hostile or damaged source each.

Every case also plants one real drift elsewhere (a new /etc file): the check must finish promptly,
say `unavailable: <reason>` for the category whose source it could not read, still report the
rest (exit 1 for the etc drift), and never show a byte of a file outside the root.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nixdrift import pipeline
from nixdrift.declared import evaluate
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category
from nixdrift.rootfs import Root

pytestmark = pytest.mark.nix

SECRET = "TOPSECRET-7a-outside-the-root"
OUTSIDE_RULES = (
    f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 31337 -m comment --comment {SECRET} -j ACCEPT\nCOMMIT\n"
)
FAKE_PROFILE = "/nix/store/" + "z" * 32 + "-profile"


def check(built: BuiltHost) -> subprocess.CompletedProcess[str]:
    argv = ["check", "--flake", str(built.flake), "--host", built.name, "--root", str(built.root)]
    argv += ["--cache-dir", str(built.tree.base / "cache"), "--format", "json"]
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    # a read that blocks or never ends fails the test by its timeout instead of hanging the suite
    return subprocess.run(
        [sys.executable, "-m", "nixdrift", *argv], capture_output=True, text=True, timeout=180, env=env
    )


def outside_file(built: BuiltHost) -> Path:
    """A file on this machine beside the root, never below it, that looks like what a link stands for."""
    secret = built.tree.base / "outside" / "rules.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(OUTSIDE_RULES)
    return secret


def outside_passwd(built: BuiltHost) -> Path:
    """A passwd beside the root: read, it would show an account named after the secret."""
    secret = built.tree.base / "outside" / "passwd"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(f"root:x:0:0::/root:/bin/sh\n{SECRET}:x:0:0::/root:/bin/sh\n")
    return secret


def outside_units(built: BuiltHost) -> Path:
    """A units.json beside the root: read, it would show a running unit named after the secret."""
    secret = built.tree.base / "outside" / "units.json"
    secret.parent.mkdir(exist_ok=True)
    unit = {"unit": f"{SECRET}.service", "load_state": "loaded", "active_state": "active", "sub_state": "running"}
    unit |= {"unit_file_state": "enabled", "fragment_path": f"/etc/systemd/system/{SECRET}.service"}
    secret.write_text(json.dumps([{**unit, "drop_in_paths": []}]))
    return secret


def replace(built: BuiltHost, host_path: str, make: Callable[[Path], object]) -> None:
    where = built.path(host_path)
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.exists():
        where.unlink()
    make(where)


def cut_short(where: Path, before: Callable[[], object] = lambda: None) -> bool:
    """Cut a captured file to two thirds, after `before` wrote what it held."""
    before()
    text = where.read_text()
    return where.write_text(text[: len(text) * 2 // 3]) > 0


def sparse(size: int) -> Callable[[Path], None]:
    def make(where: Path) -> None:
        with where.open("wb") as handle:
            handle.truncate(size)

    return make


def damaged_profile(built: BuiltHost) -> None:
    """bob's `nix profile` whose manifest.json was cut short (a fake store path below the root)."""
    store = built.path(FAKE_PROFILE)
    store.mkdir(parents=True)
    manifest = {"version": 2, "elements": [{"active": True, "storePaths": ["/nix/store/" + "y" * 32 + "-cowsay-3.8"]}]}
    text = json.dumps(manifest)
    (store / "manifest.json").write_text(text[: len(text) // 2])
    profiles = built.path("/home/bob/.local/state/nix/profiles")
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "profile-1-link").symlink_to(FAKE_PROFILE)
    (profiles / "profile").symlink_to("profile-1-link")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    plant: Callable[[BuiltHost], object]
    category: str
    reason: str  # a part of the `unavailable:` line
    nftables: bool = False


CASES = (
    Case(
        "mountinfo -> /dev/zero",
        lambda b: replace(b, "/proc/self/mountinfo", lambda p: p.symlink_to("/dev/zero")),
        "mounts",
        "/proc/self/mountinfo",
    ),
    Case(
        "iptables-save.txt -> /etc/shadow",
        lambda b: replace(b, "/.nixdrift/iptables-save.txt", lambda p: p.symlink_to("/etc/shadow")),
        "firewall",
        "a symlink, where a snapshot holds a plain file",
    ),
    Case(
        "ip6tables-save.txt -> a file outside the root",
        lambda b: replace(b, "/.nixdrift/ip6tables-save.txt", lambda p: p.symlink_to(outside_file(b))),
        "firewall",
        "a symlink, where a snapshot holds a plain file",
    ),
    Case(
        "listening.json -> /dev/zero",
        lambda b: replace(b, "/.nixdrift/listening.json", lambda p: p.symlink_to("/dev/zero")),
        "exposure",
        "a symlink, where a snapshot holds a plain file",
    ),
    Case(
        "units.json -> a file outside the root",
        lambda b: replace(b, "/.nixdrift/units.json", lambda p: p.symlink_to(outside_units(b))),
        "services",
        "a symlink, where a snapshot holds a plain file",
    ),
    Case("FIFO at /etc/passwd", lambda b: replace(b, "/etc/passwd", os.mkfifo), "users", "a FIFO, not a regular file"),
    Case(
        "100 MB /etc/passwd",
        lambda b: replace(b, "/etc/passwd", sparse(100 * 1024 * 1024)),
        "users",
        "larger than the 64 MiB read limit",
    ),
    Case(
        "passwd -> ../../../../<a file outside the root>",
        lambda b: replace(b, "/etc/passwd", lambda p: p.symlink_to("../" * 20 + str(outside_passwd(b)).lstrip("/"))),
        "users",
        "/etc/passwd cannot be read",
    ),
    Case(
        "listening.json cut short (it held a listener on 0.0.0.0)",
        lambda b: cut_short(b.path("/.nixdrift/listening.json"), before=lambda: b.listen("0.0.0.0", 4444)),
        "exposure",
        "not JSON (cut short?)",
    ),
    Case(
        "nft.json cut short",
        lambda b: cut_short(b.path("/.nixdrift/nft.json")),
        "firewall",
        "not JSON (cut short?)",
        nftables=True,
    ),
    Case("manifest.json cut short", damaged_profile, "packages", "manifest.json:1: not JSON (cut short?)"),
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_source_makes_its_category_unavailable(case: Case, host: HostTree) -> None:
    host.with_user("bob").with_firewall(tcp=[22], backend="nftables" if case.nftables else "iptables")
    built = host.build()
    built.add_etc_file("foo.conf", "x=1\n")  # real drift elsewhere: the rest of the scan goes on
    case.plant(built)
    proc = check(built)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    status = report["categories"][case.category]
    assert status.startswith("unavailable: ") and case.reason in status, status
    assert not [f for f in report["findings"] if f["category"] == case.category]
    assert report["categories"]["etc"] == "drift"
    assert "etc/foo.conf" in {f["id"] for f in report["findings"]}
    assert SECRET not in proc.stdout + proc.stderr
    for line in _machine_shadow():  # nothing of this machine's /etc/shadow (hashes, names) is shown
        assert line not in proc.stdout + proc.stderr


def test_a_hostile_source_on_an_otherwise_clean_host_is_not_clean(host: HostTree) -> None:
    built = host.with_user("bob").build()
    replace(built, "/.nixdrift/listening.json", lambda p: p.symlink_to("/dev/zero"))
    proc = check(built)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # nothing found, but not everything was read
    report = json.loads(proc.stdout)
    assert report["categories"]["exposure"].startswith("unavailable: ")
    assert {c for c, s in report["categories"].items() if s != "ok"} == {"exposure"}
    assert report["findings"] == []


def _machine_shadow() -> list[str]:
    """The hashes of this machine's /etc/shadow that look like hashes (nothing to compare otherwise)."""
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return []
    return [f[1] for f in (line.split(":") for line in lines) if len(f) > 1 and len(f[1]) > 3]


# categories whose every read below the root must go through the bounded reader (repo reads the
# flake's checkout where nixdrift runs; etc and services hash and list through their own helpers)
BOUNDED = (
    Category.GENERATION,
    Category.PACKAGES,
    Category.USERS,
    Category.NETWORK,
    Category.FIREWALL,
    Category.EXPOSURE,
    Category.MOUNTS,
)


def test_collectors_open_nothing_below_the_root_but_through_the_bounded_reader(
    host: HostTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = host.with_user("bob").with_firewall(tcp=[22]).build()
    built.nix_env_install("bob", "cowsay")  # a profile and its manifest.nix
    built.listen("0.0.0.0", 4444)
    root = Root.of(built.root)
    declared = evaluate(str(built.flake), built.name, built.tree.base / "cache")
    opened: list[str] = []
    real_open = io.open

    def traced(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else repr(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", traced)
    monkeypatch.setattr(builtins, "open", traced)
    sections = pipeline.capture(root, declared, BOUNDED)
    monkeypatch.undo()
    assert all(s.unavailable is None for s in sections.values()), {c: s.unavailable for c, s in sections.items()}
    packages = sections[Category.PACKAGES].data
    assert packages is not None and any(p.owner == "bob" for p in packages.profiles)  # the manifest was read
    below = [p for p in opened if p.startswith(str(built.root))]
    assert below == [], below
