"""The one domain exception family; only cli.main() maps these to exit codes."""

from __future__ import annotations


class NixdriftError(Exception):
    """Any failure a user should see as one clear line (CLI exit code 2)."""


class CommandError(NixdriftError):
    """A spawned command failed; carries argv and stderr so the user can paste and retry."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, message: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message or f"command failed ({returncode}): {stderr.strip()[:500]}")


class ToolMissingError(NixdriftError):
    """A required executable is not on PATH."""


class ConfigError(NixdriftError):
    """The YAML configuration is malformed; message names file, line and key."""


class EvaluationError(NixdriftError):
    """The flake could not be evaluated into a declared state."""
