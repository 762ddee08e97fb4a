"""Installed packages: the running system's environment and every Nix profile on the host.

The system's packages are the store paths that `/run/current-system/sw` and the per-user
environments `/etc/profiles/per-user/<user>` (where `users.users.<n>.packages` land) link to.
Their top-level entries (bin, sbin, lib, share, ...) are read first; real directories below are
walked only while a declared package is still unseen, so a host as declared costs one listing.

Profiles (`nix-env`, `nix profile`) are read from their generation's manifest, without nix.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import deque
from collections.abc import Iterator

from nixdrift.capture.accounts import parse_passwd
from nixdrift.capture.manifests import read_manifest_json, read_manifest_nix
from nixdrift.capture.needs import PackageNeeds
from nixdrift.capture.parsed import reason
from nixdrift.declared.model import DeclaredPackage
from nixdrift.live.packages import LivePackages, Profile, ProfileTool, SeenPaths, store_path_of
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

CURRENT_SW = "/run/current-system/sw"
USER_ENVS = "/etc/profiles/per-user"
PROFILES = "/nix/var/nix/profiles"
PER_USER = f"{PROFILES}/per-user"
SW_TOP = ("bin", "sbin", "lib", "share", "libexec", "etc")
# walking stops after this many directory entries (a real system-path has tens of thousands)
WALK_BUDGET = 200_000

SNAPSHOT_PATHS: tuple[str, ...] = (
    "/run/current-system",
    USER_ENVS,
    PROFILES,
    "/etc/passwd",
    "/root/.nix-profile",
    "/root/.local/state/nix/profiles",
)

_GEN_LINK = re.compile(r"-[0-9]+-link$")
# profiles that hold no packages: the system itself and nix-channel's channels
_NOT_PACKAGE_PROFILES = frozenset({"system", "channels", "per-user", "system-profiles"})


def parse_passwd_homes(text: str) -> tuple[tuple[str, str], ...]:
    """(user, home) pairs from /etc/passwd text; lines that are not accounts are skipped."""
    entries, _problems = parse_passwd(text)  # the users collector reports bad lines
    return tuple((e.name, e.home) for e in entries if e.home.startswith("/"))


# --- the system's environments --------------------------------------------------------------------


def _links(directory: os.PathLike[str] | str) -> Iterator[tuple[str | None, str | None]]:
    """(symlink target, None) or (None, subdirectory) for each entry of a real directory."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    yield os.readlink(entry.path), None
                elif entry.is_dir(follow_symlinks=False):
                    yield None, entry.path
    except OSError:
        return


def _environment_paths(root: Root, envs: list[str], wanted: list[DeclaredPackage]) -> tuple[set[str], bool]:
    """Store paths linked from the environments' top directories; deeper only while a wanted one is unseen."""
    seen = SeenPaths()
    tops: list[str] = []
    for env in envs:
        for target, sub in _links(root.open_path(env)):
            if target is not None:
                seen.add(target)  # `sw/bin` itself links into a package when only one has a bin/
            elif sub is not None and os.path.basename(sub) in SW_TOP:
                tops.append(sub)
    deeper: deque[str] = deque()
    for top in tops:
        for target, sub in _links(top):
            if target is not None:
                seen.add(target)
            elif sub is not None:
                deeper.append(sub)
    # a package may only contribute deep files (share/man/man1/x.1): look there before calling it missing
    unseen = [d for d in wanted if not seen.has(d)]
    budget = WALK_BUDGET
    while deeper and unseen:
        for target, sub in _links(deeper.popleft()):
            budget -= 1
            if target is not None:
                seen.add(target)
            elif sub is not None:
                deeper.append(sub)
        if budget <= 0:
            return seen.paths, False
        unseen = [d for d in unseen if not seen.has(d)]
    return seen.paths, True


def _system(root: Root, declared: PackageNeeds) -> tuple[str | None, frozenset[str] | None, bool]:
    current = store_path_of(root.resolve("/run/current-system"))
    if current is None or not root.open_path(CURRENT_SW).is_dir():
        return current, None, False
    envs = [CURRENT_SW]
    try:
        users = sorted(os.listdir(root.path(USER_ENVS)))
    except OSError:
        users = []
    envs += [f"{USER_ENVS}/{u}" for u in users if root.open_path(f"{USER_ENVS}/{u}").is_dir()]
    wanted = [*declared.system_packages, *(p for u in declared.users.values() for p in u.packages)]
    paths, complete = _environment_paths(root, envs, wanted)
    return current, frozenset(paths), complete


# --- profiles -------------------------------------------------------------------------------------


def _profile_links(root: Root, directory: str) -> list[str]:
    """The profile links in a profiles directory (not their -N-link generations, not channels)."""
    try:
        names = sorted(os.listdir(root.path(directory)))
    except OSError:
        return []
    return [
        f"{directory}/{name}"
        for name in names
        if name not in _NOT_PACKAGE_PROFILES
        and not _GEN_LINK.search(name)
        and os.path.islink(root.path(f"{directory}/{name}"))
    ]


def _canonical(root: Root, path: str) -> str:
    """The profile link a path leads to: the last link before a `<name>-N-link` generation.

    `~/.nix-profile -> /nix/var/nix/profiles/per-user/alice/profile -> profile-7-link -> /nix/store/...`
    is alice's profile `/nix/var/nix/profiles/per-user/alice/profile`."""
    current = path
    canonical = path
    for _ in range(40):
        parent = root.resolve(posixpath.dirname(current))
        current = posixpath.join(parent, posixpath.basename(current))
        target = root.readlink(current)
        if target is None:
            break
        following = posixpath.normpath(posixpath.join(parent, target))
        if following.startswith("/nix/store/"):
            break
        if _GEN_LINK.search(posixpath.basename(following)):
            canonical = current
        current = following
    return canonical


def _owner_of(canonical: str, hint: str | None) -> str | None:
    if canonical.startswith(PER_USER + "/"):
        return canonical[len(PER_USER) + 1 :].split("/", 1)[0]
    return None if canonical.startswith(PROFILES + "/") else hint


def _candidates(root: Root) -> list[tuple[str, str | None]]:
    """Every place a profile may be found, with the user it belongs to when the place says so."""
    found: list[tuple[str, str | None]] = []
    try:
        users = sorted(os.listdir(root.path(PER_USER)))
    except OSError:
        users = []
    for user in users:
        found += [(p, user) for p in _profile_links(root, f"{PER_USER}/{user}")]
    found += [(p, None) for p in _profile_links(root, PROFILES)]
    try:
        homes = parse_passwd_homes(root.read_text("/etc/passwd"))
    except FileNotFoundError:
        homes = ()
    except OSError as exc:  # users' profiles live in their homes: without passwd they would go unseen
        raise _Unreadable(f"/etc/passwd cannot be read, so users' profiles cannot be found: {reason(exc)}") from exc
    if not any(user == "root" for user, _ in homes):
        homes = (("root", "/root"), *homes)
    for user, home in homes:
        if home in ("/", "/var/empty", "/nonexistent"):
            continue
        if os.path.islink(root.path(f"{home}/.nix-profile")):
            found.append((f"{home}/.nix-profile", user))
        found += [(p, user) for p in _profile_links(root, f"{home}/.local/state/nix/profiles")]
    return found


class _Unreadable(Exception):
    """A source of installed packages that cannot be read: the category is unavailable, not "ok"."""


def _read_profile(root: Root, path: str, owner: str | None) -> tuple[Profile | None, tuple[str, ...]]:
    """The profile and its notes; _Unreadable when its manifest cannot be read in full.

    A manifest read in part is no better: the entry left out may be the one package installed by hand.
    """
    generation = store_path_of(root.resolve(path))
    if generation is None:
        return None, ()
    for name, tool, read in (
        ("manifest.json", ProfileTool.NIX_PROFILE, read_manifest_json),
        ("manifest.nix", ProfileTool.NIX_ENV, read_manifest_nix),
    ):
        manifest = f"{generation}/{name}"
        if not os.path.lexists(root.open_path(manifest)):
            continue
        try:
            text = root.read_text(manifest)
        except OSError as exc:
            raise _Unreadable(f"{path}/{name} cannot be read: {reason(exc)}") from exc
        parsed = read(text, f"{path}/{name}")
        if parsed.unreadable is not None or parsed.problems:
            why = parsed.unreadable or parsed.problems[0]
            more = f" (and {len(parsed.problems) - 1} more)" if len(parsed.problems) > 1 else ""
            raise _Unreadable(f"a profile's manifest cannot be read in full: {why}{more}")
        return Profile(path, owner, generation, tool, parsed.records), parsed.notes
    return None, ()  # no manifest: not a package profile (home-manager, a system profile)


def capture(root: Root, declared: PackageNeeds) -> Section[LivePackages]:
    try:
        return _capture(root, declared)
    except OSError as exc:  # a link loop on the way to the system or a profile: one line, not a traceback
        why = f"the system's or a profile's links cannot be followed: {reason(exc)}"
        return Section.missing(Category.PACKAGES, why)


def _capture(root: Root, declared: PackageNeeds) -> Section[LivePackages]:
    current, system_paths, complete = _system(root, declared)
    if current is None and not root.open_path(PROFILES).is_dir():
        return Section.missing(Category.PACKAGES, f"neither /run/current-system nor {PROFILES} exists: not a Nix host")
    problems: list[str] = []
    if current is not None and system_paths is None:
        problems.append(f"{CURRENT_SW} is unreadable: declared packages were not checked")
    elif system_paths is not None and not complete:
        problems.append(f"{CURRENT_SW} has more than {WALK_BUDGET} entries: missing packages were not checked")
    profiles: list[Profile] = []
    done: set[str] = set()
    try:
        for path, hint in _candidates(root):
            canonical = _canonical(root, path)
            if canonical in done:
                continue
            done.add(canonical)
            profile, notes = _read_profile(root, canonical, _owner_of(canonical, hint))
            problems += notes
            if profile is not None:
                profiles.append(profile)
    except _Unreadable as exc:
        return Section(Category.PACKAGES, None, unavailable=str(exc), problems=tuple(problems))
    data = LivePackages(current, system_paths, complete, tuple(profiles))
    return Section(Category.PACKAGES, data, problems=tuple(problems))
