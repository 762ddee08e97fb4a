"""`remediation-script.sh`: a reviewed revert of the drift, dry-run unless given `--apply`.

Host data reaches the script in two places only, and each is made safe:
- comments: `comment()` turns any text into one printable line (a newline or a bidi control in a
  file name cannot end the comment nor make it look like code);
- commands: findings carry a shell-quoted command (`compare.common.sh`). A plain simple command
  that `shlex` round-trips exactly is emitted as `run <command>`; anything else is wrapped whole as
  `run bash -c <quoted>`, so its argv is whatever the comparator meant. Odd bytes held as
  surrogates go back to the original bytes when the script is encoded (`encode()`).

Before anything runs, the script checks it is on the machine the report scanned (`target.refusal`,
repeated in bash): the same host name, the same /etc/machine-id (or, without one, the same
/run/current-system), and a scan of the live root. Elsewhere `--apply` refuses (exit 3) and the dry
run says it would; a report made from `--root` never applies.
"""

from __future__ import annotations

import re
import shlex

from nixdrift.compare.common import quote
from nixdrift.models import Finding, Report, ScanTarget, sort_findings
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

# Act only on the machine the report scanned: its host name and machine-id (without a machine-id,
# its current system), and only when that scan read the live root. Prints why not, or nothing.
wrong_machine() {
  local here="" id="" system=""
  if [ "$recorded" != 1 ]; then
    printf 'the report does not record which machine it scanned (made before nixdrift recorded it)'
    return 0
  fi
  if [ "$scanned_live" != 1 ]; then
    printf 'the report was made from a scan of %s (--root), not of a running machine: ' "$scanned_root_shown"
    printf 'its commands name that machine'"'"'s own paths and state, not paths below that directory; '
    printf 'make the report on the host itself'
    return 0
  fi
  { read -r here < /proc/sys/kernel/hostname; } 2>/dev/null || here=$(uname -n)
  if [ "$here" != "$made_for_host" ]; then
    printf 'the report was made for host %s, this is host %q' "$made_for_host_shown" "$here"
    return 0
  fi
  if [ -n "$made_for_machine_id" ]; then
    { read -r id < /etc/machine-id; } 2>/dev/null || id=""
    if [ "$id" != "$made_for_machine_id" ]; then
      printf 'the report was made for machine-id %s, ' "$made_for_machine_id_shown"
      printf 'this machine'"'"'s is %q' "${id:-unknown}"
    fi
    return 0
  fi
  if [ -n "$made_for_system" ]; then
    system=$(readlink -f /run/current-system 2>/dev/null) || system=""
    if [ "$system" != "$made_for_system" ]; then
      printf 'the report was made on a machine with no machine-id running %s, ' "$made_for_system_shown"
      printf 'this machine runs %q' "${system:-no NixOS system}"
    fi
    return 0
  fi
  printf 'the report records neither a machine-id nor a current system: it cannot tell this is the same machine'
  return 0
}
wrong=$(wrong_machine)
if [ -n "$wrong" ]; then
  if [ "$apply" = 1 ]; then
    printf 'nixdrift: refusing --apply: %s\\n' "$wrong" >&2
    exit 3
  fi
  printf 'note: --apply would refuse here: %s\\n' "$wrong"
fi

ran=0
# Print the command exactly (printf %q, in the C locale so that bidi and other non-ASCII
# characters are shown as escapes, never raw); execute it only with --apply.
run() {
  ran=$((ran + 1))
  if [ "$apply" = 1 ]; then
    printf '+'; LC_ALL=C printf ' %q' "$@"; printf '\\n'
    "$@"
  else
    printf 'would run:'; LC_ALL=C printf ' %q' "$@"; printf '\\n'
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


def target_lines(scanned: ScanTarget | None) -> list[str]:
    """The scanned machine as the shell variables that PRELUDE's guard compares with."""
    if scanned is None:
        return ["recorded=0", "scanned_live=0"]

    def word(text: str | None) -> str:
        return quote(text) if text else "''"

    values = {
        "made_for_host": scanned.host,
        "made_for_machine_id": scanned.machine_id,
        "made_for_system": scanned.system,
        "scanned_root": scanned.root,
    }
    lines = ["recorded=1", f"scanned_live={1 if scanned.live else 0}"]
    for name, value in values.items():  # the exact value to compare, and one printable line to show
        lines += [f"{name}={word(value)}", f"{name}_shown={word(comment(value or '-'))}"]
    return lines


def target_comment(scanned: ScanTarget | None) -> str:
    if scanned is None:
        return "# the report does not record which machine it scanned: --apply refuses"
    ident = (
        f"machine-id {comment(scanned.machine_id)}"
        if scanned.machine_id
        else f"system {comment(scanned.system or '-')}"
    )
    where = "its live root" if scanned.live else f"the tree below {comment(scanned.root)} (--root): --apply refuses"
    return f"# made for host {comment(scanned.host or '-')} ({ident}); the scan read {where}"


def render(report: Report) -> str:
    active = sort_findings(report.active)
    accepted = len(report.findings) - len(active)
    safe = sum(1 for f in active if f.fix.safe and f.fix.command and run_line(f.fix.command))
    lines = [
        "#!/usr/bin/env bash",
        f"# nixdrift remediation for {comment(report.host)}, generated {comment(report.generated_at)}",
        f"# {len(active)} finding(s): {safe} reverted by this script, the rest left for review below"
        + (f"; {accepted} accepted finding(s) left alone" if accepted else ""),
        target_comment(report.scanned),
        "# Review it first. Without arguments it only prints what it would run; --apply runs it,",
        "# and only on that machine (anywhere else it refuses and exits 3).",
        *target_lines(report.scanned),
        PRELUDE,
    ]
    for f in active:
        lines += [*finding_block(f), ""]
    lines.append(FOOTER)
    return "\n".join(lines)
