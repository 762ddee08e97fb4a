"""A check's answer, ready to print.

Whoever makes a report that a later `nixdrift check` may be asked again (the daemon after each report
it writes; a check after its own scan) publishes, beside it, what `check` prints for that report:
the text (plain and coloured), JSON and Markdown renders, the exit code and the stderr line. The next
check whose question is the same (the same root, flake, host, threshold and configuration file) and
whose answer is still valid prints it without loading the pipeline (`nixdrift.quick`).

An answer directory holds:

    answer.json               the meta, written last and atomically (a temporary file renamed)
    answer-<token>.<name>     the renders and any extra file of that answer (e.g. "inputs")

The meta says what question was answered (`question`), why the answer may still hold (`validity`:
`{"kind": "daemon", ...}` or `{"kind": "inputs", ...}`, judged by the reader), the exit code, the
stderr lines and, for each file, its size (a file cut short is not an answer). Every file has the
mode of the history database (0600 in a 0700 directory): an answer says as much as the report.

This module imports only the standard library at import time: `nixdrift.quick` reads answers at the
start of a process. `publish` loads the renderers when it is called.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # not typing's: importing typing (and pathlib) would cost the quick path ~15 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Any

    from nixdrift.config import Config
    from nixdrift.models import Report, Severity

MAGIC = "nixdrift-answer 1"
META = "answer.json"
RENDERS = ("text", "color", "json", "markdown")  # "color": the text render with colour
DIR_MODE = 0o700
FILE_MODE = 0o600


DAEMON_SUBDIR = "answer"  # below the daemon's state directory
CHECKS_SUBDIR = "answers"  # below the cache directory, one directory per check_key


def daemon_dir(state_dir: Path) -> Path:
    """Where the daemon publishes the answer of its report."""
    return state_dir / DAEMON_SUBDIR


def check_dir(cache_dir: Path, root: str, flake: str, host: str) -> Path:
    """Where a check publishes the answer of its own scan of `root` (one per root, flake and host)."""
    return cache_dir / CHECKS_SUBDIR / check_key(root, flake, host)


def check_key(root: str, flake: str, host: str) -> str:
    import hashlib

    return hashlib.sha256("\0".join((root, flake, host)).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def cache_path() -> str:
    """The evaluation cache's default directory, as a string: $XDG_CACHE_HOME/nixdrift, else
    ~/.cache/nixdrift (RuntimeError when there is no home directory, as `Path.home()`)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if home.startswith("~"):
            raise RuntimeError("Could not determine home directory.")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "nixdrift")


def default_cache_dir() -> Path:
    """The evaluation cache's default directory (also where checks publish their answers)."""
    from pathlib import Path

    return Path(cache_path())


def version() -> str:
    from nixdrift import __version__

    return __version__


def file_sig(path: str) -> list[int] | None:
    """What must be unchanged for a file read then to read the same now: (device, inode, size,
    mtime_ns, ctime_ns, mode) of its stat (links followed); None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode]


def question(cfg: Config, root: str, flake: str, host: str, threshold: Severity, *, nixos: bool) -> dict[str, Any]:
    """What a report answers, as a later check compares it with its own arguments: the root (a
    prefix, "/" for the live host), flake, host and threshold it was made for; the configuration file
    it was made with (path and `file_sig`: a check with another, or a changed one, scans); what a
    check without --flake, --host or --threshold would take from that configuration (`cli_flake`,
    `cli_host`: None for the root's own host name, `cli_threshold`); whether the root was recognised
    as NixOS (else only a check with --not-nixos-ok may use it); the root's machine-id; and the
    configuration's stateDir (`cli_state_dir`: where a check without --state-dir looks)."""
    import contextlib

    from nixdrift.rootfs import Root  # the bounded reader: a hostile root's machine-id is one more file

    machine_id = None
    with contextlib.suppress(OSError):
        machine_id = Root.of(root).read_text("/etc/machine-id", 256).strip() or None
    path = str(cfg.path) if cfg.path is not None else None
    return {
        "root": root,
        "flake": flake,
        "host": host,
        "threshold": threshold.name.lower(),
        "config_path": path,
        "config_sig": file_sig(path) if path is not None else None,
        "cli_flake": cfg.flake or "/etc/nixos",
        "cli_host": cfg.host_name,
        "cli_threshold": cfg.alert_threshold.name.lower(),
        "nixos": nixos,
        "machine_id": machine_id,
        "cli_state_dir": cfg.state_dir,
    }


def publish(
    directory: Path,
    report: Report,
    *,
    question: Mapping[str, Any],
    validity: Mapping[str, Any],
    extra: Mapping[str, bytes] | None = None,
    guard: AbstractContextManager[bool] | None = None,
) -> bool:
    """Write the answer of `report` to `question` into `directory` (created 0700), replacing the one
    there. Raises OSError when it cannot be written; an older answer is then left in place only if
    its meta was not yet replaced (a reader never sees a half-written one).

    `guard`, when given, is entered around the moment the answer becomes visible; when it yields
    False (the report was replaced while this answer was rendered) the answer is dropped and
    publish returns False: one who discards answers under the same lock never sees it reappear."""
    import contextlib
    import secrets

    from nixdrift.report import render
    from nixdrift.verdict import exit_code, not_scanned_line

    code = exit_code(report)
    line = not_scanned_line(report, code)
    renders: dict[str, Callable[[], str]] = {
        "text": lambda: render(report, "text", color=False),
        "color": lambda: render(report, "text", color=True),
        "json": lambda: render(report, "json"),
        "markdown": lambda: render(report, "markdown"),
    }
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    token = secrets.token_hex(8)
    sizes: dict[str, int] = {}
    current = False
    try:
        for name, make in renders.items():  # one render in memory at a time
            data = make().encode("utf-8", "surrogateescape")
            _write(directory / f"answer-{token}.{name}", data)
            sizes[name] = len(data)
            del data
        for name, data in (extra or {}).items():
            _write(directory / f"answer-{token}.{name}", data)
            sizes[name] = len(data)
        meta = {
            "magic": MAGIC,
            "version": version(),
            "token": token,
            "generated_at": report.generated_at,
            "question": dict(question),
            "validity": dict(validity),
            "exit": code,
            "stderr": [line] if line else [],
            "sizes": sizes,
        }
        tmp = directory / f".{META}.{token}"
        _write(tmp, json.dumps(meta, sort_keys=True).encode("utf-8"))
        with guard if guard is not None else contextlib.nullcontext(True) as still:
            if still:
                os.replace(tmp, directory / META)
                current = True
    finally:
        for old in directory.glob("answer-*.*"):  # the answers this one replaced (or this one, dropped)
            if current != old.name.startswith(f"answer-{token}."):
                with contextlib.suppress(OSError):
                    old.unlink()
        if not current:
            with contextlib.suppress(OSError):
                (directory / f".{META}.{token}").unlink()
    return current


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def read(directory: Path | str) -> dict[str, Any] | None:
    """The meta of the answer in `directory`, or None: none there, unreadable, damaged, or written by
    another version of nixdrift (whose renders may differ)."""
    try:
        with open(os.path.join(directory, META), "rb") as handle:
            meta = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("magic") != MAGIC or meta.get("version") != version():
        return None
    if not isinstance(meta.get("token"), str) or not meta["token"].isalnum() or not isinstance(meta.get("sizes"), dict):
        return None
    return meta


def load(directory: Path | str, meta: Mapping[str, Any], name: str) -> bytes | None:
    """One file of the answer (a render, or an extra file), or None when it is missing or not the
    size the meta says (replaced or cut short since the meta was read)."""
    size = meta["sizes"].get(name)
    if not isinstance(size, int):
        return None
    try:
        with open(os.path.join(directory, f"answer-{meta['token']}.{name}"), "rb") as handle:
            data = handle.read(size + 1)
    except OSError:
        return None
    return data if len(data) == size else None


ACCEPTED = "accepted.stamp"  # replaced by `nixdrift accept`: an answer records the one it read before


def accepted_sig(directory: Path | str) -> list[int] | None:
    """The `file_sig` of the directory's accepted stamp: taken before the accepted set is read for an
    answer, and compared by the reader, so that an answer made from the set as it was before an
    `accept` (a render already under way when the accept committed) is never printed after it."""
    return file_sig(os.path.join(directory, ACCEPTED))


def note_accepted(directory: Path) -> None:
    """After `nixdrift accept` committed: a new stamp (another inode), and the answer discarded."""
    import secrets

    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = directory / f".{ACCEPTED}.{secrets.token_hex(8)}"
    _write(tmp, b"")
    os.replace(tmp, directory / ACCEPTED)
    discard(directory)


def discard(directory: Path) -> None:
    """Make the answer in `directory` unusable (e.g. after `nixdrift accept` changed what it says)."""
    import contextlib

    with contextlib.suppress(FileNotFoundError):
        (directory / META).unlink()
