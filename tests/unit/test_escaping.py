"""Terminal-control and bidirectional characters in host data (issue 8, item 7d).

A file name holding ESC `[31m`, U+202E (right-to-left override) and a backslash goes through the
real etc collector and comparator, and every format shows it escaped; the remediation script still
names the exact bytes when bash runs it; a Nix snippet names the same file when Nix reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixdrift import cli, target
from nixdrift.capture import etc as capture_etc
from nixdrift.compare import etc as compare_etc
from nixdrift.compare.common import finding, sh
from nixdrift.compare.users import _nix_attr as users_nix_attr
from nixdrift.compare.users import nix_str as users_nix_str
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, FlakeInfo, Generations, Kind, Report, sort_findings
from nixdrift.report import markdown, render, script
from nixdrift.rootfs import Root
from nixdrift.service.history import Store
from nixdrift.sinks import journald, kube
from nixdrift.text import display, nix_attr, nix_str, printable, quote

EVIL = "x\x1b[31m\u202eback\\slash"
# every character that must never reach a terminal, a Markdown page or a PolicyReport raw
RAW = ("\x1b", "\u202e", "\u2066", "\x9b", "\x85", "\x07")
NIX = shutil.which("nix-instantiate")


def etc_findings(tmp_path: Path, name: str) -> dict[str, Finding]:
    """The real collector and comparator on a root whose /etc holds one file made by hand."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    with open(os.path.join(os.fsencode(root / "etc"), os.fsencode(name)), "w") as fh:
        fh.write("by hand\n")
    declared = DeclaredState.from_json("web1", FlakeInfo("."), {"toplevel": None, "etc": {}})
    section = capture_etc.capture(Root.of(root), declared)
    return {f.id: f for f in compare_etc.compare(declared, section)}


def report_of(*findings: Finding, host: str = "web1") -> Report:
    return Report(
        host=host,
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("git+file:///etc/nixos", "abc123"),
        generations=Generations(None, None, None),
        categories={Category.ETC: "drift"},
        findings=sort_findings(list(findings)),
        scanned=target.here(),  # a live scan of this machine: the script's host guard lets it run
    )


def assert_escaped(text: str, where: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{where} holds {ch!r} raw"


@pytest.fixture
def evil(tmp_path: Path) -> Finding:
    found = etc_findings(tmp_path, EVIL)
    assert list(found) == ["etc/x\\x1b[31m\\u202eback\\\\slash"]
    return next(iter(found.values()))


def test_a_hostile_file_name_is_escaped_in_the_finding_itself(evil: Finding) -> None:
    for value in (evil.id, evil.subject, evil.message, evil.actual, evil.path):
        assert_escaped(value, "the finding")
    assert evil.subject == "/etc/x\\x1b[31m\\u202eback\\\\slash"


def test_text_output_shows_the_escapes_not_the_characters(evil: Finding) -> None:
    text = render(report_of(evil), "text")
    assert_escaped(text, "text output")
    assert "  * etc/x\\x1b[31m\\u202eback\\\\slash\n" in text


def test_markdown_shows_the_escapes_in_prose_and_code(evil: Finding) -> None:
    md = markdown.render(report_of(evil))
    assert_escaped(md, "Markdown")
    assert "### etc/x\\\\x1b\\[31m\\\\u202eback\\\\\\\\slash" in md  # prose: Markdown-escaped too
    assert "rm -- $'/etc/x\\x1b[31m\\xe2\\x80\\xaeback\\\\slash'" in md  # the command, as bash reads it
    # code blocks keep their lines and tabs, and escape the rest as the prose does
    assert markdown.visible("a\x9b\tb\nc\u202e\udcff") == "a\\u009b\tb\nc\\u202e\\xff"


def test_policy_report_values_are_escaped(evil: Finding) -> None:
    obj = kube.policy_report(report_of(evil, host="web\u202e1"))
    dumped = json.dumps(obj, ensure_ascii=False)
    assert_escaped(dumped, "the PolicyReport")
    assert_escaped(kube.policy_report_yaml(report_of(evil)), "the PolicyReport YAML")
    (result,) = obj["results"]
    assert result["properties"]["subject"] == "/etc/x\\x1b[31m\\u202eback\\\\slash"
    assert obj["metadata"]["annotations"]["nixdrift/host"] == "web\\u202e1"


def test_journald_fields_and_the_stderr_line_are_escaped(evil: Finding) -> None:
    alert = journald.Alert.of(journald.Event.NEW, evil)
    fields = alert.fields()
    for key in ("MESSAGE", "NIXDRIFT_ID", "NIXDRIFT_SUBJECT", "NIXDRIFT_PATH"):
        assert_escaped(fields[key], key)
    assert_escaped(journald.encode(fields).decode("utf-8"), "the journal entry")
    assert_escaped(journald.stderr_line(alert), "the stderr alert")
    # a comparator that passes a raw path as evidence (a repository file, a process name)
    raw = evil.with_(evidence={"path": f"/etc/nixos/{EVIL}\x9b"})
    raw_alert = journald.Alert.of(journald.Event.NEW, raw, why=f"seen in {EVIL}")
    assert_escaped(journald.encode(raw_alert.fields()).decode("utf-8"), "the journal entry of raw evidence")
    assert_escaped(journald.stderr_line(raw_alert), "the stderr alert of raw evidence")
    assert raw_alert.fields()["NIXDRIFT_PATH"] == "/etc/nixos/x\\x1b[31m\\u202eback\\slash\\u009b"


def test_script_comments_are_escaped_and_its_command_is_printable(evil: Finding) -> None:
    text = script.render(report_of(evil))
    assert_escaped(text, "the remediation script")
    assert "#   run rm -- $'/etc/x\\x1b[31m\\xe2\\x80\\xaeback\\\\slash'" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_run_by_bash_creates_exactly_that_file_and_echoes_it_escaped(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    name = f"{EVIL}\u2066\x9b"
    target = f"{work}/{name}"
    f = finding(
        rule_name="etc-missing",
        id=f"etc/{printable(name)}",
        category=Category.ETC,
        subject=target,
        kind=Kind.MISSING,
        expected="file",
        actual="absent",
        message=f"{target} is missing",
        command=sh("touch", "--", target),
        safe=True,
        evidence={"path": target},
    )
    text = script.render(report_of(f))
    run = [line for line in text.split("\n") if line.startswith("run ")]
    assert run == [f"run touch -- {quote(target)}"]
    assert_escaped(text, "the remediation script")
    path = tmp_path / "remediation-script.sh"
    path.write_bytes(script.encode(text))
    env = {**os.environ, "LC_ALL": "C.UTF-8"}  # a UTF-8 terminal: printf %q would pass U+202E raw
    dry = subprocess.run(["bash", str(path)], capture_output=True, env=env, timeout=60, check=False)
    assert dry.returncode == 0, dry.stderr
    assert not os.listdir(work)
    assert_escaped(dry.stdout.decode("utf-8"), "the dry run's output")
    applied = subprocess.run(["bash", str(path), "--apply"], capture_output=True, env=env, timeout=60, check=False)
    assert applied.returncode == 0, applied.stderr
    assert os.listdir(os.fsencode(work)) == [name.encode("utf-8")]
    assert_escaped(applied.stdout.decode("utf-8"), "the applied run's output")


def test_display_and_printable_escape_every_control_and_bidi_character() -> None:
    controls = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]
    bidi = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0x2028)]
    for ch in (*controls, *bidi, "\udcff"):
        for fn in (display, printable):
            shown = fn(f"a{ch}b")
            assert shown.isprintable() and shown.startswith("a\\") and shown.endswith("b"), (ch, shown)
    assert display("\u009b") == "\\u009b" and display("\udc9b") == "\\x9b"  # a C1 control is not a byte
    assert display(display(EVIL)) == display(EVIL)  # applying it twice changes nothing
    assert printable("back\\slash") == "back\\\\slash" and display("back\\slash") == "back\\slash"
    assert display("héllo wörld") == "héllo wörld"  # printable text is left alone


def test_quote_writes_non_printable_characters_as_bytes_bash_reads_back(tmp_path: Path) -> None:
    for text in (EVIL, "bidi\u2066iso\u2069late", "c1\x85\x9bend", "tab\tnew\nline", "odd\udcffbyte", "plain é"):
        word = quote(text)
        assert word.isprintable() or "\udcff" in text, word
        out = subprocess.run(
            ["bash", "-c", f"printf %s {word}"], capture_output=True, timeout=30, check=True, env={"LC_ALL": "C"}
        )
        assert out.stdout == text.encode("utf-8", "surrogateescape")


NIX_NAMES = [
    "back\\slash",
    'say "hi"',
    "${builtins.abort ''x''}",
    "$${y}",
    EVIL,
    "tab\there\nnl",
    "if",
    "a$",
    "\u2066z",
]


@pytest.mark.skipif(NIX is None, reason="needs nix-instantiate")
@pytest.mark.parametrize("name", NIX_NAMES)
def test_a_nix_string_and_attribute_name_the_exact_text(name: str) -> None:
    assert NIX is not None
    as_string = subprocess.run(
        [NIX, "--eval", "--strict", "--json", "-E", nix_str(name)], capture_output=True, text=True, timeout=60
    )
    assert as_string.returncode == 0, as_string.stderr
    assert json.loads(as_string.stdout) == name
    expr = f"builtins.attrNames {{ {nix_attr(name)} = 1; }}"
    as_attr = subprocess.run(
        [NIX, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, timeout=60
    )
    assert as_attr.returncode == 0, as_attr.stderr
    assert json.loads(as_attr.stdout) == [name]
    assert nix_str(name).isprintable()


@pytest.mark.skipif(NIX is None, reason="needs nix-instantiate")
@pytest.mark.parametrize("name", ["back\\slash", 'q"uote', "dollar${x}", EVIL])
def test_the_etc_fix_snippet_declares_the_same_file(tmp_path: Path, name: str) -> None:
    assert NIX is not None
    (f,) = etc_findings(tmp_path, name).values()
    assert f.fix.nix.startswith("environment.etc.")
    expr = f"builtins.attrNames ({{ {f.fix.nix} }}).environment.etc"
    out = subprocess.run([NIX, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [name]


@pytest.mark.skipif(NIX is None, reason="needs nix-instantiate")
def test_the_users_fix_snippets_name_the_same_account_and_home() -> None:
    assert NIX is not None
    name, home = "back\\slash", '/home/q"uote${x}'
    expr = f"{{ users.users.{users_nix_attr(name)}.home = {users_nix_str(home)}; }}.users.users"
    out = subprocess.run([NIX, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {name: {"home": home}}


def test_history_lists_a_hostile_watched_path_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path)
    store.events([("changed", None, f"/etc/{EVIL}", f"by {EVIL}")])
    store.close()
    assert cli.main(["history", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert_escaped(out, "nixdrift history")
    assert "/etc/x\\x1b[31m\\u202eback\\slash  by x\\x1b" in out


def test_capture_never_imports_compare() -> None:
    """DESIGN.md: capture/ and compare/ both stand on the ground floor; neither imports the other."""
    code = (
        "import sys, pkgutil, importlib, nixdrift.capture as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'nixdrift.capture.{m.name}')\n"
        "print(sorted(n for n in sys.modules if n.startswith('nixdrift.compare')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
