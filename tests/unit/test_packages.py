"""Packages: imperative installs in any profile, declared packages missing from the running system."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture import packages
from nixdrift.compare import packages as c_packages
from nixdrift.declared.model import DeclaredState
from nixdrift.demo.hostbuilder import BUILD_USERS
from nixdrift.models import Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

NIX = ["--option", "substituters", "", *BUILD_USERS]
needs_nix = pytest.mark.skipif(shutil.which("nix-env") is None, reason="needs nix")


def store(name: str) -> str:
    return f"/nix/store/{hashlib.sha256(name.encode()).hexdigest()[:32]}-{name}"


def pkg(name: str) -> dict[str, Any]:
    pname, _, version = name.partition("-")
    return {"name": name, "pname": pname, "version": version, "path": store(name)}


def declared(
    system: list[str] = (),  # type: ignore[assignment]
    users: dict[str, list[str]] | None = None,
    toplevel: str | None = None,
) -> DeclaredState:
    raw = {
        "toplevel": toplevel or store("nixos-system-declared"),
        "systemPackages": [pkg(n) for n in system],
        "users": {u: {"name": u, "packages": [pkg(n) for n in ps]} for u, ps in (users or {}).items()},
    }
    return DeclaredState.from_json("web", FlakeInfo(reference="/etc/nixos"), raw)


def nix_env_manifest(*names: str) -> str:
    entries = " ".join(
        f'{{ meta = {{ }}; name = "{n}"; out = {{ outPath = "{store(n)}"; }}; outPath = "{store(n)}"; '
        f'outputs = [ "out" ]; type = "derivation"; }}'
        for n in names
    )
    return f"[ {entries} ]"


class Host:
    """A NixOS-like tree: a running system with its sw environment, users, and profiles."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.passwd = ["root:x:0:0::/root:/bin/sh"]
        (root / "etc").mkdir(parents=True, exist_ok=True)
        self._write_passwd()

    def _write_passwd(self) -> None:
        (self.root / "etc/passwd").write_text("\n".join(self.passwd) + "\n")

    def link(self, path: str, target: str) -> Host:
        where = self.root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        if where.is_symlink():
            where.unlink()
        os.symlink(target, where)
        return self

    def store_dir(self, name: str) -> str:
        path = store(name)
        (self.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return path

    def environment(self, name: str, files: dict[str, str]) -> str:
        """A buildEnv-like store path: relative file -> the package it links into."""
        env = self.store_dir(name)
        for rel, package in files.items():
            self.link(f"{env}/{rel}", f"{store(package)}/{rel}")
        return env

    def system(self, files: dict[str, str], toplevel: str = "nixos-system-declared") -> Host:
        top = self.store_dir(toplevel)
        self.link(f"{top}/sw", self.environment(toplevel + "-system-path", files))
        return self.link("/run/current-system", top)

    def with_user(self, name: str, home: str | None = None, env: dict[str, str] | None = None) -> Host:
        self.passwd.append(f"{name}:x:1000:100::{home or '/home/' + name}:/bin/sh")
        self._write_passwd()
        if env is not None:
            self.link(f"/etc/profiles/per-user/{name}", self.environment(f"user-env-{name}", env))
        return self

    def profile(self, path: str, manifest_name: str, text: str, number: int = 1) -> Host:
        gen = self.store_dir(f"user-environment-{hashlib.sha256(text.encode()).hexdigest()[:8]}")
        (self.root / gen.lstrip("/") / manifest_name).write_text(text)
        return self.profile_link(path, gen, number)

    def profile_link(self, path: str, generation: str, number: int = 1) -> Host:
        base = os.path.basename(path)
        self.link(f"{os.path.dirname(path)}/{base}-{number}-link", generation)
        return self.link(path, f"{base}-{number}-link")

    def capture(self, decl: DeclaredState) -> Any:
        return packages.capture(Root.of(self.root), decl)

    def check(self, decl: DeclaredState) -> dict[str, Finding]:
        return {f.id: f for f in c_packages.compare(decl, self.capture(decl))}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "host")


ALICE_PROFILE = "/nix/var/nix/profiles/per-user/alice/profile"


def test_a_host_exactly_as_declared_has_no_findings(host: Host) -> None:
    host.system({"bin/hello": "hello-1.0", "bin/git": "git-2.44"}).with_user("alice", env={"bin/jq": "jq-1.7"})
    # nix-channel's profile is not a package profile
    host.profile("/nix/var/nix/profiles/per-user/root/channels", "manifest.nix", nix_env_manifest("nixos"))
    decl = declared(["hello-1.0", "git-2.44"], users={"alice": ["jq-1.7"]})
    section = host.capture(decl)
    assert section.problems == ()
    assert section.data.profiles == ()
    assert c_packages.compare(decl, section) == ()


def test_nix_env_install_into_a_users_profile_is_imperative(host: Host) -> None:
    host.system({"bin/hello": "hello-1.0"}).with_user("alice")
    host.profile(ALICE_PROFILE, "manifest.nix", nix_env_manifest("ripgrep-14.1"))
    found = host.check(declared(["hello-1.0"]))
    assert list(found) == ["packages/alice/ripgrep"]
    f = found["packages/alice/ripgrep"]
    assert (f.severity, f.kind) == (Severity.HIGH, Kind.UNMANAGED)
    assert f.actual == "ripgrep-14.1"
    assert f.evidence["path"] == ALICE_PROFILE
    assert f.evidence["store_path"] == store("ripgrep-14.1")
    assert f.fix.nix == "users.users.alice.packages = [ pkgs.ripgrep ];"
    assert f.fix.command == f"nix-env -p {ALICE_PROFILE} -e ripgrep-14.1"
    assert not f.fix.safe


def test_a_profile_package_declared_by_pname_or_path_is_not_drift(host: Host) -> None:
    host.system({"bin/hello": "hello-1.0"}).with_user("alice", env={"bin/jq": "jq-1.7"})
    # another version of a declared system package, and the exact store path of alice's own package
    host.profile(ALICE_PROFILE, "manifest.nix", nix_env_manifest("hello-2.0", "jq-1.7"))
    assert host.check(declared(["hello-1.0"], users={"alice": ["jq-1.7"]})) == {}


def test_another_users_declared_package_is_still_imperative(host: Host) -> None:
    host.system({}).with_user("alice").with_user("bob")
    host.profile(ALICE_PROFILE, "manifest.nix", nix_env_manifest("jq-1.7"))
    assert list(host.check(declared(users={"bob": ["jq-1.7"]}))) == ["packages/alice/jq"]


def test_roots_nix_profile_link_is_read_once_as_roots_profile(host: Host) -> None:
    host.system({})
    host.profile("/nix/var/nix/profiles/per-user/root/profile", "manifest.nix", nix_env_manifest("htop-3.3"))
    host.link("/root/.nix-profile", "/nix/var/nix/profiles/per-user/root/profile")
    found = host.check(declared())
    assert list(found) == ["packages/root/htop"]
    assert found["packages/root/htop"].fix.nix == "environment.systemPackages = [ pkgs.htop ];"


def test_nix_profile_in_a_users_xdg_state_dir(host: Host) -> None:
    host.system({}).with_user("alice")
    manifest = {
        "version": 3,
        "elements": {
            "cowsay": {
                "active": True,
                "attrPath": "legacyPackages.x86_64-linux.cowsay",
                "storePaths": [store("cowsay-3.7")],
                "url": "github:NixOS/nixpkgs/abc",
                "originalUrl": "flake:nixpkgs",
                "priority": 5,
            }
        },
    }
    path = "/home/alice/.local/state/nix/profiles/profile"
    host.profile(path, "manifest.json", json.dumps(manifest))
    f = host.check(declared())["packages/alice/cowsay"]
    assert f.fix.command == f"nix profile remove cowsay --profile {path}"
    assert f.fix.nix == "users.users.alice.packages = [ pkgs.cowsay ];"
    assert f.evidence["url"] == "github:NixOS/nixpkgs/abc"


def test_the_system_wide_default_profile_is_named_by_its_path(host: Host) -> None:
    host.system({})
    host.profile("/nix/var/nix/profiles/default", "manifest.nix", nix_env_manifest("tmux-3.4"))
    f = host.check(declared())["packages//nix/var/nix/profiles/default/tmux"]
    assert "owner" not in f.evidence
    assert f.fix.nix == "environment.systemPackages = [ pkgs.tmux ];"


def test_a_broken_manifest_makes_packages_unavailable_naming_it(host: Host) -> None:
    # what alice's profile holds is unknown: it may be the one package installed by hand (issue 8, 7e)
    host.system({}).with_user("alice").with_user("bob")
    host.profile(ALICE_PROFILE, "manifest.nix", "[ { name = ")
    host.profile("/nix/var/nix/profiles/per-user/bob/profile", "manifest.nix", nix_env_manifest("vim-9.1"))
    section = host.capture(declared())
    assert section.data is None
    assert section.unavailable is not None and f"{ALICE_PROFILE}/manifest.nix:" in section.unavailable


def test_profiles_without_a_manifest_are_not_package_profiles(host: Host) -> None:
    host.system({})
    host.profile_link("/nix/var/nix/profiles/per-user/alice/home-manager", host.store_dir("home-manager-generation"))
    section = host.capture(declared())
    assert section.data.profiles == ()
    assert section.problems == ()


# --- declared packages missing from the running system --------------------------------------------


def test_declared_package_missing_from_an_older_running_system(host: Host) -> None:
    host.system({"bin/hello": "hello-1.0"}, toplevel="nixos-system-older")
    found = host.check(declared(["hello-1.0", "git-2.44"]))
    assert list(found) == ["packages/system/git/missing"]
    f = found["packages/system/git/missing"]
    assert (f.kind, f.severity) == (Kind.MISSING, Severity.MEDIUM)
    assert f.fix.command == "nixos-rebuild switch --flake '/etc/nixos#web'"


def test_a_package_linked_only_deep_or_by_another_output_is_present(host: Host) -> None:
    files = {"bin/hello": "hello-1.0", "bin/other": "other-1", "share/man/man1/tldr.1": "tldr-1.0",
             "bin/curl": "curl-8.4.0-bin"}  # fmt: skip
    host.system(files, toplevel="nixos-system-older")
    assert host.check(declared(["hello-1.0", "tldr-1.0", "curl-8.4.0"])) == {}


def test_users_packages_are_looked_up_in_their_environment(host: Host) -> None:
    host.system({}, toplevel="nixos-system-older").with_user("alice", env={"bin/jq": "jq-1.7"})
    found = host.check(declared(users={"alice": ["jq-1.7", "fd-9.0"]}))
    assert list(found) == ["packages/alice/fd/missing"]


def test_nothing_is_missing_when_the_declared_system_runs(host: Host) -> None:
    # a headers-only package links nothing into sw, yet the declared build holds it
    host.system({"bin/hello": "hello-1.0"})
    assert host.check(declared(["hello-1.0", "headers-only-1.0"])) == {}


def test_an_unreadable_system_reports_no_missing_packages(host: Host) -> None:
    host.with_user("alice")
    host.profile(ALICE_PROFILE, "manifest.nix", nix_env_manifest("vim-9.1"))
    section = host.capture(declared(["hello-1.0"]))
    assert section.data.system_paths is None
    assert [f.id for f in c_packages.compare(declared(["hello-1.0"]), section)] == ["packages/alice/vim"]


def test_a_tree_that_is_not_a_nix_host_is_unavailable(tmp_path: Path) -> None:
    section = packages.capture(Root.of(tmp_path), declared(["hello-1.0"]))
    assert section.data is None
    assert "not a Nix host" in (section.unavailable or "")


@given(st.text())
def test_passwd_parser_never_raises(text: str) -> None:
    assert all(home.startswith("/") for _, home in packages.parse_passwd_homes(text))


def test_passwd_parser_skips_junk() -> None:
    text = "root:x:0:0::/root:/bin/sh\n#comment\nbroken\nalice:x:1000:100:A:/home/alice:/bin/sh\n\udcff:x\n"
    assert packages.parse_passwd_homes(text) == (("root", "/root"), ("alice", "/home/alice"))


# --- real profiles written by nix -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("nix-env") is None:
        pytest.skip("needs nix")
    expr = (
        'derivation { name = "hello-1.0"; system = builtins.currentSystem; builder = "/bin/sh"; '
        'args = ["-c" "/bin/mkdir -p $out/bin; echo > $out/bin/hello"]; }'
    )
    run = {"check": True, "capture_output": True, "text": True}
    hello = subprocess.run(["nix-build", "--no-out-link", "--option", "sandbox", "false", *NIX, "-E", expr], **run)
    path = hello.stdout.strip()
    work = tmp_path_factory.mktemp("profiles")
    subprocess.run(["nix-env", *NIX, "-p", str(work / "env"), "-i", path], **run)
    nix = ["nix", "--extra-experimental-features", "nix-command flakes", *NIX]
    subprocess.run([*nix, "profile", "install", "--profile", str(work / "prof"), path], **run)
    return {"hello": path, "env": os.path.realpath(work / "env"), "prof": os.path.realpath(work / "prof")}


@needs_nix
@pytest.mark.nix
def test_real_nix_env_and_nix_profile_generations_from_the_local_store(
    host: Host, real_profiles: dict[str, str]
) -> None:
    # the generations are in this machine's store, not below the root: rootfs falls back to it
    host.system({}).with_user("alice")
    host.profile_link(ALICE_PROFILE, real_profiles["env"], number=3)
    host.profile_link("/home/alice/.local/state/nix/profiles/profile", real_profiles["prof"])
    found = host.check(declared())
    # both are alice's main profile: the second is named by its path so ids stay unique
    xdg = "/home/alice/.local/state/nix/profiles/profile"
    assert set(found) == {"packages/alice/hello", f"packages/{xdg}/hello"}
    by_tool = {f.evidence["tool"]: f for f in c_packages.compare(declared(), host.capture(declared()))}
    assert by_tool["nix-env"].fix.command == f"nix-env -p {ALICE_PROFILE} -e hello-1.0"
    assert by_tool["nix-env"].evidence["store_path"] == real_profiles["hello"]
    assert by_tool["nix profile"].fix.command.startswith("nix profile remove ")
    assert by_tool["nix profile"].evidence["path"] == "/home/alice/.local/state/nix/profiles/profile"
    # declaring it removes both findings
    assert host.check(declared(["hello-1.0"])) == {}
