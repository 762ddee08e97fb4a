"""The running, booted and profiled system generations as records."""

from __future__ import annotations

from dataclasses import dataclass

CURRENT = "/run/current-system"
BOOTED = "/run/booted-system"
PROFILES = "/nix/var/nix/profiles"
SYSTEM_PROFILE = f"{PROFILES}/system"


@dataclass(frozen=True, slots=True)
class SystemGeneration:
    number: int
    link: str  # host path, e.g. /nix/var/nix/profiles/system-42-link
    target: str | None  # the store path it points at


@dataclass(frozen=True, slots=True)
class LiveGeneration:
    current: str | None  # store path of /run/current-system
    booted: str | None
    profile: str | None  # store path of /nix/var/nix/profiles/system
    profile_number: int | None  # N of the system-N-link the profile points at
    current_boot: tuple[str, ...] | None  # kernel, initrd, modules of the current system when readable
    booted_boot: tuple[str, ...] | None
    generations: tuple[SystemGeneration, ...]
    declared_built: bool  # the declared toplevel is in the store (below the root or locally)

    @property
    def current_number(self) -> int | None:
        """The generation number of the running system, when a system-N-link points at it."""
        numbers = [g.number for g in self.generations if self.current and g.target == self.current]
        return max(numbers) if numbers else None
