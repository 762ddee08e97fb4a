"""Comparator for this category (placeholder until implemented)."""

from __future__ import annotations

from nixdrift.declared.model import DeclaredState
from nixdrift.models import Finding, Section


def compare(declared: DeclaredState, live: Section[object]) -> tuple[Finding, ...]:
    return ()
