"""Declared state: what the host's flake says the system should be."""

from nixdrift.declared.evaluate import default_cache_dir, evaluate, flake_info
from nixdrift.declared.model import DeclaredState

__all__ = ["DeclaredState", "default_cache_dir", "evaluate", "flake_info"]
