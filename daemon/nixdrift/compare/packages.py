"""Packages: installed imperatively into a profile, or declared but absent from the running system."""

from __future__ import annotations

from collections.abc import Iterator

from nixdrift.compare.common import finding, nix_attr, printable, sh
from nixdrift.declared.model import DeclaredPackage, DeclaredState
from nixdrift.live.packages import (
    LivePackages,
    Profile,
    ProfileElement,
    ProfileTool,
    package_present,
    path_names,
    store_name,
)
from nixdrift.models import Category, Finding, Kind, Section

CAT = Category.PACKAGES


def _declared_for(declared: DeclaredState, owner: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """Store paths and pnames a profile owner may have without drift: the system's and their own."""
    packages = list(declared.system_packages)
    if owner is not None and owner in declared.users:
        packages += declared.users[owner].packages
    paths = frozenset(p.path for p in packages if p.path)
    pnames = frozenset(name for p in packages for name in (p.pname, p.name) if name)
    return paths, pnames


def _is_declared(element: ProfileElement, paths: frozenset[str], pnames: frozenset[str]) -> bool:
    return any(p in paths for p in element.store_paths) or element.pname in pnames or element.name in pnames


def _pkgs_attr(element: ProfileElement) -> str:
    """`pkgs.<attr>`: the flake attribute it came from (`legacyPackages.<system>.hello`) or its pname."""
    parts = element.attr_path.split(".")
    if len(parts) >= 3 and parts[0] in ("packages", "legacyPackages") and parts[2] != "default":
        return "pkgs." + ".".join(nix_attr(p) for p in parts[2:])
    return "pkgs." + nix_attr(element.pname or element.name)


def _declaration(owner: str | None, element: ProfileElement) -> str:
    attr = _pkgs_attr(element)
    if owner is None or owner == "root":
        return f"environment.systemPackages = [ {attr} ];"
    return f"users.users.{nix_attr(owner)}.packages = [ {attr} ];"


def _removal(profile: Profile, element: ProfileElement) -> str:
    match element.tool:
        case ProfileTool.NIX_ENV:
            return sh("nix-env", "-p", profile.path, "-e", element.remove_key)
        case ProfileTool.NIX_PROFILE:
            return sh("nix", "profile", "remove", element.remove_key, "--profile", profile.path)


def _finding_id(profile: Profile, element: ProfileElement, ids: set[str]) -> str:
    """`packages/<owner>/<pname>` for a user's main profile, else `packages/<profile path>/<pname>`;
    unique even when a user has two main profiles or a profile holds two versions of a package."""
    key = printable((element.pname if element.tool is ProfileTool.NIX_ENV else element.name) or element.name)
    subjects = [profile.owner] if profile.is_main and profile.owner else []
    for subject in [*subjects, profile.path]:
        candidate = f"packages/{printable(subject)}/{key}"
        if candidate not in ids:
            return candidate
    return f"packages/{printable(profile.path)}/{key}-{printable(element.version or element.store_paths[0][11:43])}"


def _imperative(declared: DeclaredState, profile: Profile, ids: set[str]) -> Iterator[Finding]:
    paths, pnames = _declared_for(declared, profile.owner)
    for element in profile.elements:
        if not element.active or _is_declared(element, paths, pnames):
            continue
        finding_id = _finding_id(profile, element, ids)
        ids.add(finding_id)
        installed = store_name(element.store_paths[0])
        evidence = {
            "path": profile.path,
            "generation": profile.generation,
            "store_path": element.store_paths[0],
            "tool": element.tool.value,
        }
        if profile.owner:
            evidence["owner"] = profile.owner
        if element.attr_path:
            evidence["attr_path"] = element.attr_path
        if element.url:
            evidence["url"] = element.url
        who = f"{profile.owner}'s profile" if profile.owner else "the profile"
        yield finding(
            rule_name="imperative-package",
            id=finding_id,
            category=CAT,
            subject=printable(f"{profile.path}: {installed}"),
            kind=Kind.UNMANAGED,
            expected="not installed",
            actual=printable(installed),
            message=f"{printable(installed)} is installed in {who} {printable(profile.path)} "
            f"with {element.tool.value}, outside the flake.",
            nix=_declaration(profile.owner, element),
            command=_removal(profile, element),
            reason="removing software a user installed needs their agreement",
            evidence=evidence,
        )


def _missing(declared: DeclaredState, live: LivePackages) -> Iterator[Finding]:
    if live.system_paths is None or not live.system_complete:
        return
    if declared.toplevel is not None and live.current_system == declared.toplevel:
        # the running system is the declared build, so it holds every declared package by construction;
        # one that links no file into the environment (headers only) would otherwise look missing
        return
    names = path_names(live.system_paths)
    owners: list[tuple[str, tuple[DeclaredPackage, ...]]] = [("system", declared.system_packages)]
    owners += [(name, user.packages) for name, user in declared.users.items()]
    ids: set[str] = set()
    for owner, packages in owners:
        for package in packages:
            if package_present(package, live.system_paths, names):
                continue
            label = package.pname or package.name
            finding_id = f"packages/{printable(owner)}/{printable(label)}/missing"
            if finding_id in ids:
                continue
            ids.add(finding_id)
            where = "environment.systemPackages" if owner == "system" else f"users.users.{owner}.packages"
            yield finding(
                rule_name="package-missing",
                id=finding_id,
                category=CAT,
                subject=printable(package.name or label),
                kind=Kind.MISSING,
                expected=printable(package.path or package.name),
                actual="not in the running system",
                message=f"{printable(package.name)} is declared in {printable(where)} but the running system "
                f"{live.current_system} does not provide it.",
                command=sh("nixos-rebuild", "switch", "--flake", f"{declared.flake.reference}#{declared.host}"),
                reason="switching the system restarts services; run it when the flake is what you want",
                evidence={"path": "/run/current-system/sw", "declared_in": where},
            )


def compare(declared: DeclaredState, live: Section[LivePackages]) -> tuple[Finding, ...]:
    state = live.data
    if state is None:
        return ()
    ids: set[str] = set()
    found = [f for profile in state.profiles for f in _imperative(declared, profile, ids)]
    found += _missing(declared, state)
    return tuple(found)
