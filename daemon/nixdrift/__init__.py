"""nixdrift: declared-vs-live drift detection for NixOS hosts."""

__version__ = "0.1.0"
