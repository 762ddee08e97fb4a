"""`nixdrift.quick`: a published answer is printed only for exactly its question, and only while it
holds; anything else is left to the full command line (None, nothing printed).

The answers here are published from in-memory reports for the live root of this machine (its own
host name and machine-id: what a daemon watching it would record); the byte-for-byte comparison
with the full command line on a real daemon's state is in tests/integration/test_quick_answer.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factories import dns_changed, make_report, port_opened
from nixdrift import answer, cli, config, quick, terminal
from nixdrift.models import Category, Severity
from nixdrift.report import render

FLAKE = "/srv/flake"
HEADER = re.compile(r"from the daemon's scan at 2024-05-01T10:00:00Z \(age \d+ s; --fresh to scan now\)")


@dataclass(frozen=True)
class Published:
    state: Path
    directory: Path
    report: Any
    host: str

    def argv(self, *extra: str) -> list[str]:
        return [
            "check",
            "--flake",
            FLAKE,
            "--host",
            self.host,
            "--state-dir",
            str(self.state),
            "--not-nixos-ok",
            *extra,
        ]


def publish(
    state: Path,
    *,
    cfg: config.Config | None = None,
    threshold: Severity | None = None,
    captured: float | None = None,
    nixos: bool = True,
    host: str = "web1",
) -> Published:
    cfg = cfg or config.Config()
    threshold = threshold or cfg.alert_threshold  # what a check without --threshold takes
    report = make_report(port_opened(), dns_changed(), categories={Category.FIREWALL: "drift",
        Category.NETWORK: "drift", Category.MOUNTS: "unavailable: /proc/1/mountinfo: permission denied"},
        threshold=threshold, host=host)  # fmt: skip
    (state / "history.db").parent.mkdir(parents=True, exist_ok=True)
    (state / "history.db").write_bytes(b"")  # the daemon's history is there (its answer is read instead)
    directory = answer.daemon_dir(state)
    question = answer.question(cfg, "/", FLAKE, host, threshold, nixos=nixos)
    now = time.time()
    validity = {"kind": "daemon", "captured": now - 5 if captured is None else captured, "generated": now - 7}
    answer.publish(directory, report, question=question, validity=validity)
    return Published(state, directory, report, host)


@pytest.fixture
def published(tmp_path: Path) -> Published:
    return publish(tmp_path / "state")


def quick_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | None, str, str]:
    code = quick.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_json_answer_is_the_render_with_the_header_on_stderr(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = quick_run(published.argv("--format", "json"), capsys)
    assert code == 1  # drift at or above the threshold
    assert out == render(published.report, "json")
    lines = err.splitlines()
    assert HEADER.fullmatch(lines[0].removeprefix("nixdrift: ")), err
    assert lines[1:] == [l for l in [_not_scanned(published)] if l]  # noqa: E741


def _not_scanned(p: Published) -> str:
    from nixdrift.verdict import exit_code, not_scanned_line

    return not_scanned_line(p.report, exit_code(p.report)) or ""


def test_a_text_answer_has_the_header_as_its_second_line(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = quick_run(published.argv("--color", "never"), capsys)
    assert code == 1
    plain = render(published.report, "text", color=False)
    first, _, rest = plain.partition("\n")
    lines = out.split("\n")
    assert lines[0] == first
    assert HEADER.fullmatch(lines[1]), out
    assert "\n".join(lines[2:]) == rest
    coloured = quick_run(published.argv("--color", "always", "--format", "text"), capsys)[1]
    assert "\x1b[" in coloured and "\x1b[" not in out


def test_the_header_says_the_age_of_the_report(published: Published) -> None:
    meta = answer.read(published.directory)
    assert meta is not None
    generated = meta["validity"]["generated"]
    assert quick.header(meta, now=generated + 42).endswith("(age 42 s; --fresh to scan now)")
    assert "(age 0 s;" in quick.header(meta, now=generated - 10)  # a clock behind: never negative


def _edit_meta(p: Published, change: Callable[[dict[str, Any]], None]) -> None:
    path = p.directory / answer.META
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _other(p: Published, capsys: pytest.CaptureFixture[str], *argv: str) -> None:
    code, out, err = quick_run(list(argv), capsys)
    assert (code, out, err) == (None, "", "")


def test_it_answers_before_each_fallback_is_tried(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the fallbacks below: the same answer, asked the same question, is printed."""
    assert quick_run(published.argv("--format", "markdown"), capsys)[0] == 1


@pytest.mark.parametrize(
    "extra",
    [
        ("--fresh",),
        ("--no-cache",),
        ("--help",),
        ("-h",),
        ("--max-age", "0"),
        ("--max-age", "-5"),
        ("--max-age", "nan"),
        ("--max-age", "soon"),
        ("--format", "policyreport"),
        ("--format", "yaml"),
        ("--color", "sometimes"),
        ("--threshold", "HIGH"),
        ("--form", "json"),  # an abbreviation argparse would take: the full CLI decides
        ("--flake",),  # a value missing
        ("--host", ""),
        ("--verbose",),
        ("stray",),
    ],
)
def test_an_option_it_does_not_take_as_given_falls_back(
    published: Published, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    _other(published, capsys, *published.argv(*extra))


def test_logging_asked_for_falls_back(
    published: Published, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIXDRIFT_LOG", "debug")
    _other(published, capsys, *published.argv())


def test_another_question_falls_back(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    _other(published, capsys, *published.argv("--flake", "/srv/other-flake"))
    _other(published, capsys, *published.argv("--host", "web2"))
    _other(published, capsys, *published.argv("--threshold", "high"))
    _other(published, capsys, *published.argv("--root", str(published.state)))  # a daemon answers the live host only
    assert quick.main(["report", *published.argv()[1:]]) is None
    assert quick.main(["-v", *published.argv()]) is None


def test_the_threshold_the_answer_was_made_for_is_answered_when_asked(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quick_run(published.argv("--threshold", "medium"), capsys)[0] == 1
    low = publish(published.state, threshold=Severity.LOW)
    _other(low, capsys, *low.argv())  # the check's own threshold (the configuration's: medium) is another
    assert quick_run(low.argv("--threshold", "low"), capsys)[0] == 1


def test_a_stale_answer_falls_back_unless_max_age_allows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = publish(tmp_path / "state", captured=time.time() - 7200)
    _other(old, capsys, *old.argv())
    assert quick_run(old.argv("--max-age", "10000"), capsys)[0] == 1


def test_another_machine_falls_back(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    _edit_meta(published, lambda m: m["question"].update(machine_id="0" * 32))
    _other(published, capsys, *published.argv())


def test_an_answer_of_a_root_not_nixos_needs_not_nixos_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = publish(tmp_path / "state", nixos=False)
    _other(p, capsys, *[a for a in p.argv() if a != "--not-nixos-ok"])
    assert quick_run(p.argv(), capsys)[0] == 1


@pytest.mark.skipif(Path("/run/current-system").exists(), reason="this machine is NixOS")
def test_this_machine_not_nixos_needs_not_nixos_ok_as_the_cli_does(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    _other(published, capsys, *[a for a in published.argv() if a != "--not-nixos-ok"])


def test_a_changed_or_added_configuration_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "config.yaml"
    conf.write_text("alertThreshold: low\n")
    p = publish(tmp_path / "state", cfg=config.load(conf))
    assert quick_run(p.argv("--config", str(conf)), capsys)[0] == 1
    assert quick_run(p.argv("--config", f"{tmp_path}//./config.yaml"), capsys)[0] == 1  # as pathlib spells it
    _other(p, capsys, *p.argv())  # the check would not read that file
    conf.write_text("alertThreshold: high\n")
    _other(p, capsys, *p.argv("--config", str(conf)))

    bare = publish(tmp_path / "bare")
    _other(bare, capsys, *bare.argv("--config", str(conf)))


def test_a_configured_state_directory_elsewhere_falls_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --state-dir the check looks where the configuration says, not where this answer is."""
    conf = tmp_path / "config.yaml"
    conf.write_text(f"stateDir: {tmp_path / 'elsewhere'}\n")
    p = publish(tmp_path / "state", cfg=config.load(conf))
    assert quick_run(p.argv("--config", str(conf)), capsys)[0] == 1  # --state-dir names it
    monkeypatch.setattr(quick, "DEFAULT_STATE_DIR", str(p.state))  # the answer where the default is
    without = [a for a in p.argv("--config", str(conf)) if a not in ("--state-dir", str(p.state))]
    _other(p, capsys, *without)
    plain = tmp_path / "plain.yaml"
    plain.write_text("alertThreshold: low\n")
    q = publish(tmp_path / "state", cfg=config.load(plain))
    assert (
        quick_run([a for a in q.argv("--config", str(plain)) if a not in ("--state-dir", str(q.state))], capsys)[0] == 1
    )


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.update(version="0.0.0-other"),
        lambda m: m.update(magic="something else"),
        lambda m: m.update(exit="1"),
        lambda m: m.update(stderr="not a list"),
        lambda m: m.update(token="../../x"),
        lambda m: m["validity"].update(kind="weekly"),
        lambda m: m["validity"].update(captured="yesterday"),
        lambda m: m["question"].pop("flake"),
        lambda m: m.pop("question"),
    ],
)
def test_a_damaged_or_foreign_meta_falls_back(
    published: Published, capsys: pytest.CaptureFixture[str], damage: Callable[[dict[str, Any]], None]
) -> None:
    _edit_meta(published, damage)
    _other(published, capsys, *published.argv())


def test_a_meta_that_is_not_json_falls_back(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    (published.directory / answer.META).write_text('{"magic": "nixdrift-answer 1", ')
    _other(published, capsys, *published.argv())


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_a_render_cut_short_or_missing_falls_back(
    published: Published, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    meta = answer.read(published.directory)
    assert meta is not None
    render_file = published.directory / f"answer-{meta['token']}.{fmt}"
    render_file.write_bytes(render_file.read_bytes()[:-1])
    _other(published, capsys, *published.argv("--format", fmt, "--color", "never"))
    render_file.unlink()
    _other(published, capsys, *published.argv("--format", fmt, "--color", "never"))


def test_no_history_database_beside_the_answer_falls_back(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    (published.state / "history.db").unlink()
    _other(published, capsys, *published.argv())


def test_a_discarded_answer_falls_back(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    answer.discard(published.directory)
    _other(published, capsys, *published.argv())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_state_directory_this_user_cannot_read_falls_back_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = publish(tmp_path / "private" / "state")
    (tmp_path / "private").chmod(0o700)
    os.seteuid(65534)
    try:
        code = quick.main(p.argv())
    finally:
        os.seteuid(0)
    assert (code, *capsys.readouterr()) == (None, "", "")


# --- what quick repeats of the modules it must not import --------------------------------------


def test_the_repeated_constants_are_the_owners() -> None:
    from nixdrift import nixos_root
    from nixdrift.commands import check, common, daemon
    from nixdrift.service import history

    assert str(daemon.DEFAULT_STATE_DIR) == quick.DEFAULT_STATE_DIR
    assert quick.DEFAULT_CONFIG == str(config.DEFAULT_PATH) == common.DEFAULT_CONFIG
    assert quick.DEFAULT_MAX_AGE == check.DEFAULT_MAX_AGE
    assert quick.DB_NAME == history.DB_NAME
    assert quick.NIXOS_MARKERS == nixos_root.MARKERS
    assert set(quick.FORMATS) <= set(check.FORMATS)
    assert tuple(s.name.lower() for s in sorted(Severity, key=lambda s: s.value)) == quick.SEVERITIES


@pytest.mark.parametrize("path", ["a", "a/", "./a//b/.", "/x//y/", "/", "//z", "///z", ".", "a/../b", "/a/./b/"])
def test_paths_are_spelled_as_pathlib_spells_them(path: str) -> None:
    if path.startswith("//") and not path.startswith("///"):
        with pytest.raises(quick.Unsure):
            quick.pathlib_str(path)
        return
    assert quick.pathlib_str(path) == str(Path(path))
    assert quick.absolute(path) == str(Path(path).absolute())


def test_the_default_cache_directory_is_where_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nixdrift.declared import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nixdrift"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == Path.home() / ".cache" / "nixdrift" == tmp_path / "home/.cache/nixdrift"
    assert answer.cache_path() == str(default_cache_dir())


def test_the_colour_rule_is_the_terminal_s() -> None:
    class Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert terminal.use_color("auto", Tty(True), {}) is True  # type: ignore[arg-type]
    assert terminal.use_color("auto", Tty(True), {"NO_COLOR": "1"}) is False  # type: ignore[arg-type]
    assert terminal.use_color("auto", Tty(True), {"TERM": "dumb"}) is False  # type: ignore[arg-type]
    assert terminal.use_color("auto", Tty(False), {}) is False  # type: ignore[arg-type]
    assert terminal.use_color("always", Tty(False), {"NO_COLOR": "1"}) is True  # type: ignore[arg-type]


# --- `nixdrift --help` -------------------------------------------------------------------------


def test_the_one_line_helps_are_what_each_command_registers() -> None:
    full = cli.parser(every=True)
    sub = next(a for a in full._actions if a.dest == "command")
    registered = {a.dest: a.help for a in sub._choices_actions}  # type: ignore[attr-defined]
    assert registered == cli.SUMMARIES
    light = cli.parser()
    assert light.format_help() == full.format_help()


def test_help_is_as_wide_as_shutil_says(monkeypatch: pytest.MonkeyPatch) -> None:
    for columns in ("120", "50", "", "junk"):
        monkeypatch.setenv("COLUMNS", columns)
        monkeypatch.setenv("LINES", "40")
        assert cli._formatter("nixdrift")._width == shutil.get_terminal_size().columns - 2  # type: ignore[attr-defined]
