"""The NixOS layout of a host: how /etc, the accounts and activation are made.

Declared from the flake (`system.etc.overlay.{enable,mutable}`, `services.userborn.enable`,
`systemd.sysusers.enable`, `system.nixos-init.enable`) and confirmed on the live root:

- /etc: classic = setup-etc.pl (`/etc/static`, links, `/etc/.clean`); overlay = an overlayfs on
  /etc over the erofs metadata image (`/run/nixos-etc-metadata`) and `/etc-basedir`, with the upper
  dir `/.rw-etc/upper` when mutable, mounted `ro` when immutable.
- accounts: perl = update-users-groups.pl (`/var/lib/nixos/{uid,gid}-map`, `declarative-*`);
  userborn (`/var/lib/userborn`, files in `passwordFilesLocation`); sysusers (`/etc/sysusers.d`,
  `/var/lib/nixos/{uid,gid}/<name>`).
- init: scripted = activation scripts; nixos-init = none (needs the overlay and userborn or sysusers).

Everything here is pure: the collectors read the evidence (capture.etc the /etc mount, capture.users
the account backend's files) and the comparators judge it with these functions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from nixdrift.declared.model import DeclaredLayout

OVERLAY_UPPER = "/.rw-etc/upper"  # etc-activation.nix: upperdir=/sysroot/.rw-etc/upper (initrd)
OVERLAY_WORK = "/.rw-etc/work"
METADATA_MOUNT = "/run/nixos-etc-metadata"  # the erofs metadata image, the first lower layer
BASEDIR = "/etc-basedir"  # the data-only lower layer (the copies' content)
METADATA_IMAGE_LINK = "/etc-metadata-image"  # initrd-find-etc's link to the generation's image
SYSROOT = "/sysroot"  # the initrd mounts /etc as /sysroot/etc: mountinfo keeps the initrd's paths


class EtcLayout(enum.Enum):
    CLASSIC = "classic"  # setup-etc.pl
    OVERLAY = "overlay"  # system.etc.overlay, mutable
    OVERLAY_IMMUTABLE = "overlay-immutable"  # system.etc.overlay with mutable = false


class AccountsLayout(enum.Enum):
    PERL = "perl"  # update-users-groups.pl
    USERBORN = "userborn"
    SYSUSERS = "sysusers"


class InitLayout(enum.Enum):
    SCRIPTED = "scripted"  # activation scripts
    NIXOS_INIT = "nixos-init"


@dataclass(frozen=True, slots=True)
class Layout:
    etc: EtcLayout
    accounts: AccountsLayout
    init: InitLayout

    def to_json(self) -> dict[str, str]:
        return {"etc": self.etc.value, "accounts": self.accounts.value, "init": self.init.value}

    @property
    def immutable_etc(self) -> bool:
        return self.etc is EtcLayout.OVERLAY_IMMUTABLE


def declared_layout(d: DeclaredLayout) -> Layout:
    if not d.etc_overlay:
        etc = EtcLayout.CLASSIC
    else:
        etc = EtcLayout.OVERLAY if d.etc_overlay_mutable else EtcLayout.OVERLAY_IMMUTABLE
    accounts = AccountsLayout.USERBORN if d.userborn else AccountsLayout.SYSUSERS if d.sysusers else AccountsLayout.PERL
    init = InitLayout.NIXOS_INIT if d.nixos_init else InitLayout.SCRIPTED
    return Layout(etc, accounts, init)


@dataclass(frozen=True, slots=True)
class EtcMount:
    """/etc as mountinfo shows it (the last mount on /etc is the one in effect)."""

    fs_type: str
    read_only: bool
    super_options: Mapping[str, str]  # overlay: lowerdir, upperdir, workdir, ...

    @property
    def upper(self) -> str | None:
        return host_path(self.super_options["upperdir"]) if "upperdir" in self.super_options else None

    @property
    def lowers(self) -> tuple[str, ...]:
        """The lower layers, data-only ones (after `::`) included, as paths of the running system."""
        text = self.super_options.get("lowerdir", "")
        parts = [p for chunk in text.split("::") for p in chunk.split(":")]
        return tuple(host_path(p) for p in parts if p)


def host_path(path: str) -> str:
    """A path the initrd named below /sysroot, as the running system sees it."""
    if path == SYSROOT or path.startswith(SYSROOT + "/"):
        return path[len(SYSROOT) :] or "/"
    return path


def parse_options(options: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition("=")
        out[key] = value
    return out


def live_etc(mount: EtcMount | None, has_static: bool) -> EtcLayout | None:
    """What the live /etc is: an overlay (rw or ro) or setup-etc.pl's tree; None when unknown."""
    if mount is not None and mount.fs_type == "overlay":
        if mount.read_only or mount.upper is None:
            return EtcLayout.OVERLAY_IMMUTABLE
        return EtcLayout.OVERLAY
    return EtcLayout.CLASSIC if has_static else None


def etc_mismatch(declared: Layout, mount: EtcMount | None, has_static: bool) -> str | None:
    """Why the live /etc is not the declared layout, or None when it is."""
    live = live_etc(mount, has_static)
    if declared.etc is EtcLayout.CLASSIC:
        if live in (EtcLayout.OVERLAY, EtcLayout.OVERLAY_IMMUTABLE):
            return f"/etc is an overlay ({live.value}) but the flake declares the classic /etc"
        return None
    if mount is None or mount.fs_type != "overlay":
        what = f"a {mount.fs_type} mount" if mount is not None else "not a mount point"
        return f"/etc is {what}, not the overlay system.etc.overlay declares"
    if live is not declared.etc:
        if declared.etc is EtcLayout.OVERLAY_IMMUTABLE:
            return "/etc is mounted read-write, but system.etc.overlay.mutable = false declares it read-only"
        return "/etc is mounted read-only, but system.etc.overlay.mutable declares it writable"
    return None


@dataclass(frozen=True, slots=True)
class AccountsEvidence:
    """The files each accounts backend leaves (read by capture.users)."""

    perl_state: bool  # /var/lib/nixos/declarative-users or uid-map (update-users-groups.pl)
    userborn_state: bool  # /var/lib/userborn exists
    sysusers_config: bool  # /etc/sysusers.d/00-nixos.conf


def live_accounts(e: AccountsEvidence) -> AccountsLayout | None:
    if e.userborn_state:
        return AccountsLayout.USERBORN
    if e.sysusers_config:
        return AccountsLayout.SYSUSERS
    return AccountsLayout.PERL if e.perl_state else None


def accounts_mismatch(declared: Layout, e: AccountsEvidence) -> str | None:
    live = live_accounts(e)
    if live is None or live is declared.accounts:
        return None
    return f"the accounts are kept by {live.value}, but the flake declares {declared.accounts.value}"


def report_layout(declared: DeclaredLayout, etc: EtcLayout | None, accounts: AccountsLayout | None) -> dict[str, str]:
    """The report's `layout`: the declared parts, and what the host showed (`live`)."""
    want = declared_layout(declared)
    out = want.to_json()
    seen = [f"etc {etc.value}" if etc is not None else "etc unknown"]
    seen.append(f"accounts {accounts.value}" if accounts is not None else "accounts unknown")
    same = etc is want.etc and accounts is want.accounts
    out["live"] = "as declared" if same else ", ".join(seen)
    return out
