"""`remediation-script.sh`: a reviewed revert of the drift, dry-run unless given `--apply`.

Host data reaches the script in two places only, and each is made safe:
- comments: `comment()` turns any text into one printable line (a newline or a bidi control in a
  file name cannot end the comment nor make it look like code);
- commands: findings carry a shell-quoted command (`compare.common.sh`). A plain simple command
  that `shlex` round-trips exactly is emitted as `run <command>`; anything else is wrapped whole as
  `run bash -c <quoted>`, so its argv is whatever the comparator meant. Odd bytes held as
  surrogates go back to the original bytes when the script is encoded (`encode()`).
"""

from __future__ import annotations

import re
import shlex

from nixdrift.models import Finding, Report, sort_findings
from nixdrift.report.text import safe_line

PRELUDE = """\
set -euo pipefail

usage() { printf 'usage: %s [--apply]\\n' "$0"; }
apply=0
case "${1-}" in
  --apply) apply=1 ;;
  "") ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

ran=0
# Print the command exactly (printf %q); execute it only with --apply.
run() {
  ran=$((ran + 1))
  if [ "$apply" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\\n'
    "$@"
  else
    printf 'would run:'; printf ' %q' "$@"; printf '\\n'
  fi
}
"""

FOOTER = """\
if [ "$apply" = 1 ]; then
  printf 'applied %d command(s)\\n' "$ran"
else
  printf 'dry run: %d command(s) shown; run with --apply to execute them\\n' "$ran"
fi
"""


def comment(text: str) -> str:
    """Arbitrary text as the body of one shell comment line."""
    return safe_line(text)


def encode(script: str) -> bytes:
    """The script's bytes: surrogates (undecodable bytes of host paths) become those bytes again."""
    return script.encode("utf-8", "surrogateescape")


# One shell word as compare.common.quote() writes it: plain characters, '...' (with '"'"' for a
# quote) and bash's $'...' with backslash escapes. A command made only of such words is emitted
# verbatim: bash reads back exactly the argv it was built from.
_WORD = r"""(?:[A-Za-z0-9@%+=:,./_-]|'[^']*'|"'"|\$'(?:[^'\\\x00]|\\.)*')+"""
_QUOTED_ARGV = re.compile(rf"{_WORD}(?: {_WORD})*")


def run_line(command: str) -> str | None:
    """The `run ...` line that executes `command` with its argv intact, or None when no script can
    hold it (a NUL byte, or text that is neither UTF-8 nor an escaped byte)."""
    if not command.strip() or "\x00" in command:
        return None
    try:
        encode(command)
    except UnicodeEncodeError:
        return None
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    if (argv and shlex.join(argv) == command) or _QUOTED_ARGV.fullmatch(command):
        return f"run {command}"
    return f"run bash -c {shlex.quote(command)}"


def shown(command: str) -> str:
    """A command for a comment: verbatim when it is one printable line, else escaped (and said so)."""
    if all(ch.isprintable() for ch in command):
        return command
    return f"{comment(command)}  (shown with escapes)"


def finding_block(f: Finding) -> list[str]:
    lines = [
        f"# ---- [{f.severity.label}] {comment(f.id)}",
        f"# {comment(f.message)}",
        f"# expected: {comment(f.expected or '-')}; actual: {comment(f.actual or '-')}",
    ]
    if f.path:
        lines.append(f"# path: {comment(f.path)}")
    line = run_line(f.fix.command) if f.fix.command else None
    if f.fix.safe and line is not None:
        lines.append(line)
    elif f.fix.command:
        reason = f.fix.reason or "reverting needs a decision"
        if f.fix.safe:
            reason = "the command cannot be written into a script safely; run it by hand"
        lines += [f"# not run: {comment(reason)}", f"#   {shown(line or f.fix.command)}"]
    else:
        lines.append(f"# no revert command: {comment(f.fix.reason or 'fix it by hand')}")
    if f.fix.nix:
        lines.append("# or keep the live state by declaring it in the flake:")
        lines += [f"#   {comment(nix_line)}" for nix_line in f.fix.nix.split("\n")]
    return lines


def render(report: Report) -> str:
    active = sort_findings(report.active)
    accepted = len(report.findings) - len(active)
    safe = sum(1 for f in active if f.fix.safe and f.fix.command and run_line(f.fix.command))
    lines = [
        "#!/usr/bin/env bash",
        f"# nixdrift remediation for {comment(report.host)}, generated {comment(report.generated_at)}",
        f"# {len(active)} finding(s): {safe} reverted by this script, the rest left for review below"
        + (f"; {accepted} accepted finding(s) left alone" if accepted else ""),
        "# Review it first. Without arguments it only prints what it would run; --apply runs it.",
        PRELUDE,
    ]
    for f in active:
        lines += [*finding_block(f), ""]
    lines.append(FOOTER)
    return "\n".join(lines)
