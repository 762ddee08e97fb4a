"""`nixdrift check` answered before the command line is even parsed.

The daemon (after each report it writes) and a check (after its own scan) publish the answer of
their report beside it (`nixdrift.answer`). When the question of this check is exactly the one that
answer is for and the answer still holds, `main` prints it, byte for byte what the full command
would print, and the process ends without loading argparse, YAML, SQLite, the models or the
pipeline: a check on a host whose daemon is running costs little more than Python's start.

`main` returns None whenever it is unsure, and the full command line runs as if this module did not
exist: an option it does not know (or `--help`, `--fresh`, `--no-cache`, an abbreviation, an empty or
malformed value), no answer, an answer to another question (root, flake, host, threshold,
configuration file or its contents, state directory, machine-id, a root that is not NixOS without
--not-nixos-ok), an answer no longer valid (the daemon's older than --max-age; a check's whose
inputs changed, as `nixdrift.scanindex` judges), a render cut short, another version of nixdrift,
or anything it cannot read. It never prints a traceback, and it prints nothing before it is sure.

Standard library only (and `nixdrift.answer`, `nixdrift.terminal`; `nixdrift.scanindex` only for a
check's answer): a test holds it to that with `python -X importtime`.
"""

from __future__ import annotations

import os
import sys
import time

from nixdrift import answer, terminal

TYPE_CHECKING = False  # not typing's: its import alone is a third of what this path may cost
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

# Repeated from the modules that own them, which this path must not import (a test keeps them equal).
DEFAULT_STATE_DIR = "/var/lib/nixdrift"  # commands.daemon.DEFAULT_STATE_DIR
DEFAULT_CONFIG = "/etc/nixdrift/config.yaml"  # commands.common.DEFAULT_CONFIG
DEFAULT_MAX_AGE = 3600.0  # commands.check.DEFAULT_MAX_AGE
DEFAULT_FLAKE = "/etc/nixos"  # commands.common.load_target
DB_NAME = "history.db"  # service.history.DB_NAME
NIXOS_MARKERS = ("/run/current-system", "/etc/static", "/etc/NIXOS", "/nix/var/nix/profiles/system")

FORMATS = ("text", "json", "markdown")  # the renders an answer holds; policyreport, openreports: the full CLI
SEVERITIES = ("info", "low", "medium", "high", "critical")
VALUED = (
    "--format",
    "--color",
    "--state-dir",
    "--max-age",
    "--threshold",
    "--config",
    "--flake",
    "--host",
    "--root",
    "--cache-dir",
)
FLAGS = ("--not-nixos-ok",)
MACHINE_ID_MAX = 256  # as answer.question reads it
HOSTNAME_MAX = 64 * 1024


class Unsure(Exception):
    """This check is not answered here: the full command line runs."""


def main(argv: Sequence[str]) -> int | None:
    """The exit code of `nixdrift check` answered from a published answer, or None: run the CLI."""
    if not argv or argv[0] != "check":
        return None
    try:
        out, err, code = plan(argv[1:])
    except (Unsure, OSError, ValueError, LookupError, TypeError, AttributeError, RuntimeError):
        return None
    try:
        sys.stdout.write(out)
        for line in err:
            print(line, file=sys.stderr)
    except BrokenPipeError:  # as cli.main: a reader that went away is no error
        return 0
    return code


def plan(args: Sequence[str]) -> tuple[str, tuple[str, ...], int]:
    """What the check prints on stdout and stderr, and its exit code; Unsure: not answered here."""
    if os.environ.get("NIXDRIFT_LOG"):  # the full command's log lines are part of what it prints
        raise Unsure("NIXDRIFT_LOG asks for the full command's logging")
    opts = options(args)
    root = opts.get("--root")
    live = root is None  # the daemon answers for the live host only, and first
    directory, meta = (live and daemon_answer(opts)) or check_answer(opts, "/" if root is None else absolute(root))
    fmt = opts.get("--format", "text")
    color = terminal.use_color(opts.get("--color", "auto"), sys.stdout)
    body = answer.load(directory, meta, "color" if fmt == "text" and color else fmt)
    if body is None:
        raise Unsure("a render is missing or cut short")
    text = body.decode("utf-8")  # strict: what the CLI would write is then what this writes
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if encoding != "utf8" and not text.isascii():
        raise Unsure("stdout does not take UTF-8")
    stderr = meta["stderr"]
    if not isinstance(stderr, list) or not all(isinstance(line, str) for line in stderr):
        raise Unsure("damaged meta")
    code = meta["exit"]
    if not isinstance(code, int) or isinstance(code, bool):
        raise Unsure("damaged meta")
    note = header(meta)
    if fmt == "text":  # the header's second line; other formats keep their shape (commands.check)
        first, _, rest = text.partition("\n")
        text = f"{first}\n{note}\n{rest}"
        err = tuple(stderr)
    else:
        err = (f"nixdrift: {note}", *stderr)
    return text, err, code


def header(meta: Mapping[str, Any], now: float | None = None) -> str:
    """The line that says where a check's answer came from (the text's second line, else stderr)."""
    validity = meta["validity"]
    stamp = meta["generated_at"]
    if not isinstance(stamp, str):
        raise Unsure("damaged meta")
    if validity.get("kind") == "daemon":
        generated = validity.get("generated")
        if isinstance(generated, int | float) and not isinstance(generated, bool):
            age = f"{max(0, round((time.time() if now is None else now) - generated))} s"
        else:
            age = "unknown"
        return f"from the daemon's scan at {stamp} (age {age}; --fresh to scan now)"
    return f"from the previous check at {stamp}: nothing it read has changed since (--fresh to scan now)"


def options(args: Sequence[str]) -> dict[str, str]:
    """The options of this check, when every one is one this module understands."""
    opts: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in FLAGS and not eq:
            opts[name] = ""
            continue
        if name not in VALUED:
            raise Unsure(f"an option this path does not take: {arg}")
        if not eq:
            if not rest:
                raise Unsure("an option without its value")
            value = rest.pop(0)
        if not value or value.startswith("-"):
            raise Unsure("an empty value, or one argparse may take for an option")
        opts[name] = value
    if opts.get("--format", "text") not in FORMATS or opts.get("--color", "auto") not in terminal.CHOICES:
        raise Unsure("a format or colour this path does not print")
    if opts.get("--threshold", "info") not in SEVERITIES:
        raise Unsure("a threshold spelled otherwise than the lower-case names")
    if not float(opts.get("--max-age", DEFAULT_MAX_AGE)) > 0:  # 0: always scan (`not >`: nor a NaN)
        raise Unsure("--max-age asks for a scan")
    return opts


def daemon_answer(opts: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """The daemon's answer for this check of the live host; None: the daemon has no history here
    (a check's own answer may do); Unsure: the daemon's history is there but its answer is not this one."""
    state = opts.get("--state-dir") or DEFAULT_STATE_DIR
    directory = os.path.join(state, answer.DAEMON_SUBDIR)
    meta = answer.read(directory)
    if meta is None:
        if has_history(state):  # the CLI answers from the stored report, or says why not
            raise Unsure("the daemon's state holds no answer this path can read")
        return None
    validity, q = meta["validity"], meta["question"]
    if validity.get("kind") != "daemon":
        raise Unsure("not the daemon's answer")
    if (opts.get("--state-dir") or q.get("cli_state_dir") or DEFAULT_STATE_DIR) != state:
        raise Unsure("the configuration names another state directory")
    if not has_history(state):
        raise Unsure("no history database beside the answer")
    max_age = float(opts.get("--max-age", DEFAULT_MAX_AGE))
    captured = validity.get("captured")
    if not isinstance(captured, int | float) or isinstance(captured, bool):
        raise Unsure("damaged meta")
    if time.time() - captured > max_age:
        raise Unsure("the daemon's state is older than --max-age")
    if answer.accepted_sig(directory) != validity.get("accepted"):
        raise Unsure("drift was accepted since the answer read what was accepted")
    # The daemon's answer is of the host it watches; that it is this one, the machine-id says.
    same_question(opts, q, "/", root_must_match=False)
    return directory, meta


def check_answer(opts: Mapping[str, str], root: str) -> tuple[str, dict[str, Any]]:
    """A previous check's answer for this root, flake and host, if nothing it read has changed."""
    if root != "/" and not os.path.isdir(root):
        raise Unsure("the root is not a directory (the CLI says so)")
    flake = opts.get("--flake") or DEFAULT_FLAKE  # a configured flake: its answer is not found here
    host = opts.get("--host") or host_name(root)
    cache = opts.get("--cache-dir") or answer.cache_path()
    directory = os.path.join(cache, answer.CHECKS_SUBDIR, answer.check_key(root, flake, host))
    meta = answer.read(directory)
    if meta is None:
        raise Unsure("no answer")
    validity, q = meta["validity"], meta["question"]
    if validity.get("kind") != "inputs":
        raise Unsure("not a check's answer")
    if root == "/":  # the CLI answers from the daemon's history first when there is one
        state = opts.get("--state-dir") or q.get("cli_state_dir") or DEFAULT_STATE_DIR
        if has_history(state):
            raise Unsure("the daemon's history is there")
    same_question(opts, q, root, root_must_match=True)
    try:
        from nixdrift import scanindex
    except ImportError:
        raise Unsure("no scan index in this build") from None
    if not scanindex.still_valid(directory, meta):
        raise Unsure("something the previous check read has changed")
    return directory, meta


def same_question(opts: Mapping[str, str], q: Mapping[str, Any], root: str, *, root_must_match: bool) -> None:
    """Unsure unless the answer's question is the one this check asks."""
    if root_must_match and q["root"] != root:
        raise Unsure("another root")
    config = config_path(opts)
    if q["config_path"] != config or q["config_sig"] != (answer.file_sig(config) if config is not None else None):
        raise Unsure("another configuration file, or it changed")
    if (opts.get("--flake") or q["cli_flake"]) != q["flake"]:
        raise Unsure("another flake")
    if (opts.get("--host") or q["cli_host"] or host_name(root)) != q["host"]:
        raise Unsure("another host")
    if (opts.get("--threshold") or q["cli_threshold"]) != q["threshold"]:
        raise Unsure("another threshold")
    if "--not-nixos-ok" not in opts and not (q["nixos"] is True and is_nixos(root)):
        raise Unsure("not NixOS, and no --not-nixos-ok (the CLI says so)")
    if machine_id(root) != q["machine_id"]:
        raise Unsure("another machine")


def config_path(opts: Mapping[str, str]) -> str | None:
    """The configuration file the CLI would load, as `str(Path(...))` spells it."""
    given = opts.get("--config")
    if given is not None:
        return pathlib_str(given)
    try:
        os.stat(DEFAULT_CONFIG)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return DEFAULT_CONFIG


def pathlib_str(path: str) -> str:
    """`str(Path(path))` without pathlib: empty and `.` components and a trailing slash dropped."""
    if path.startswith("//") and not path.startswith("///"):
        raise Unsure("a path pathlib spells with two slashes")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    joined = "/".join(parts)
    return f"/{joined}" if path.startswith("/") else joined or "."


def absolute(path: str) -> str:
    """`str(Path(path).absolute())`, as `Root.of` makes the root's prefix."""
    if not path.startswith("/"):
        path = f"{os.getcwd()}/{path}"
    return pathlib_str(path)


def has_history(state: str) -> bool:
    try:
        os.stat(os.path.join(state, DB_NAME))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True  # (a state directory this user may not read raised: the CLI says so)


def below(root: str, path: str) -> str:
    """Where `path` is read below `root`, its links resolved as `rootfs.Root` resolves them: an
    absolute target restarts at the root, and a store path absent below the root is this machine's
    (on a NixOS root /etc/hostname is a link into /etc/static, which leads into the store)."""
    if root == "/":
        return path
    base = root.rstrip("/")
    stack = [p for p in reversed(path.split("/")) if p]
    current, hops = "", 0
    while stack:
        part = stack.pop()
        if part == "..":
            current = current.rsplit("/", 1)[0]
            continue
        if part == ".":
            continue
        candidate = f"{current}/{part}"
        where = _real(base, candidate)
        if os.path.islink(where):
            hops += 1
            if hops > 40:
                raise Unsure("too many levels of links below the root")
            target = os.readlink(where)
            if target.startswith("/"):
                current = ""
            stack.extend(p for p in reversed(target.split("/")) if p)
        else:
            current = candidate
    return _real(base, current or "/")


def _real(base: str, host_path: str) -> str:
    """`Root._real`: below the root, but a store path absent there from this machine's store."""
    where = base + host_path
    if host_path.startswith("/nix/store/") and not os.path.lexists(where):
        return host_path
    return where


def read_small(path: str, limit: int) -> bytes | None:
    """A regular file's bytes (None when absent); Unsure when it is larger than `limit`."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unsure(f"{path} is not a regular file")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Unsure(f"{path} is larger than its reader takes")
    return data


def machine_id(root: str) -> str | None:
    data = read_small(below(root, "/etc/machine-id"), MACHINE_ID_MAX)
    return (data.decode("utf-8", "surrogateescape").strip() or None) if data is not None else None


def host_name(root: str) -> str:
    """As `commands.common.host_name`: the root's /etc/hostname, else (live) the kernel's."""
    data = read_small(below(root, "/etc/hostname"), HOSTNAME_MAX)
    name = data.decode("utf-8", "surrogateescape").strip() if data is not None else ""
    if not name and root == "/":
        name = os.uname().nodename.split(".", 1)[0]
    if not name:
        raise Unsure("no host name (the CLI says so)")
    return name


def is_nixos(root: str) -> bool:
    """A NixOS marker below the root (as `nixos_root.markers`; a marker this path cannot see
    without `rootfs` only makes it unsure)."""
    if any(os.path.lexists(root.rstrip("/") + m) for m in NIXOS_MARKERS):  # as `root.path(m)`: not resolved
        return True
    data = read_small(below(root, "/etc/os-release"), 64 * 1024)
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ID":
            return value.strip().strip("\"'") == "nixos"
    return False
