"""Live capture for this category (placeholder until implemented)."""

from __future__ import annotations

from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

SNAPSHOT_PATHS: tuple[str, ...] = ()


def capture(root: Root, declared: DeclaredState) -> Section[object]:
    return Section.missing(Category.USERS, "not implemented yet")
