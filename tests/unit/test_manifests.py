"""The profile manifest parsers: real manifests written by nix, every manifest.json version, and junk."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture.manifests import (
    ProfileTool,
    parse_drv_name,
    parse_manifest_json,
    parse_manifest_nix,
    store_path_of,
)
from nixdrift.demo.hostbuilder import BUILD_USERS

HELLO = "/nix/store/77x0nwfmcgjv8lfhirashvj67yvf39n1-hello-1.0"
CURL_BIN = "/nix/store/0000000000000000000000000000000a-curl-8.4.0-bin"
CURL_MAN = "/nix/store/0000000000000000000000000000000b-curl-8.4.0-man"
NIX = ["--option", "substituters", "", *BUILD_USERS]

needs_nix = pytest.mark.skipif(shutil.which("nix-env") is None, reason="needs nix")


def _nix_build(name: str) -> str:
    expr = (
        f'derivation {{ name = "{name}"; system = builtins.currentSystem; builder = "/bin/sh"; '
        'args = ["-c" "/bin/mkdir -p $out/bin; echo \'#!/bin/sh\' > $out/bin/' + name.split("-")[0] + '"]; }'
    )
    out = subprocess.run(
        ["nix-build", "--no-out-link", "--option", "sandbox", "false", *NIX, "-E", expr],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="session")
def hello_path() -> str:
    return _nix_build("hello-1.0")


# --- manifest.nix ---------------------------------------------------------------------------------


@needs_nix
@pytest.mark.nix
def test_reads_the_manifest_nix_env_writes(tmp_path: Path, hello_path: str) -> None:
    profile = tmp_path / "profile"
    subprocess.run(["nix-env", *NIX, "-p", str(profile), "-i", hello_path], check=True, capture_output=True)
    elements, problems = parse_manifest_nix((profile / "manifest.nix").read_text())
    assert problems == ()
    [hello] = elements
    assert (hello.name, hello.pname, hello.version) == ("hello-1.0", "hello", "1.0")
    assert hello.store_paths == (hello_path,)
    assert hello.tool is ProfileTool.NIX_ENV
    assert hello.remove_key == "hello-1.0"


def test_reads_every_output_and_a_nixpkgs_style_meta() -> None:
    text = f"""[ {{ meta = {{ description = "a \\"quoted\\" tool\\n"; license = {{ free = true; }};
        platforms = [ "x86_64-linux" ]; priority = 5; broken = false; x = null; f = <LAMBDA>;
        g = «lambda @ /nix/store/x.nix:1:2»; h = «repeated»; }};
      name = "curl-8.4.0"; bin = {{ outPath = "{CURL_BIN}"; }}; man = {{ outPath = "{CURL_MAN}"; }};
      outPath = "{CURL_BIN}"; outputs = [ "bin" "man" ]; type = "derivation"; }} ]"""
    elements, problems = parse_manifest_nix(text)
    assert problems == ()
    [curl] = elements
    assert curl.pname == "curl"
    assert curl.store_paths == (CURL_BIN, CURL_MAN)


def test_a_bad_entry_is_reported_and_the_others_kept() -> None:
    text = f"""[
      {{ name = "hello-1.0"; outPath = "{HELLO}"; }}
      {{ name = 42; outPath = "{HELLO}"; }}
      {{ name = "broken"; outPath = = ; }}
      {{ name = "nopath-1"; }}
      {{ name = "after-2.0"; outPath = "{HELLO}"; }}
    ]"""
    elements, problems = parse_manifest_nix(text, "/p/manifest.nix")
    assert [e.name for e in elements] == ["hello-1.0", "after-2.0"]
    assert problems == (
        "/p/manifest.nix:3: entry has no name",
        "/p/manifest.nix:4: unexpected '='",
        "/p/manifest.nix:5: entry 'nopath-1' has no store path",
    )


@pytest.mark.parametrize("text", ["", "{ }", "[ { name = ", '[ { name = "a-1"; outPath = "/tmp/x"; } ]', "[[[["])
def test_unreadable_manifest_nix_gives_problems_not_packages(text: str) -> None:
    elements, problems = parse_manifest_nix(text)
    assert elements == ()
    assert problems


@given(st.text())
def test_manifest_nix_parser_never_raises(text: str) -> None:
    elements, problems = parse_manifest_nix(text)
    assert all(e.store_paths for e in elements)
    assert all(isinstance(p, str) for p in problems)


@given(st.binary())
def test_manifest_nix_parser_survives_bad_bytes(data: bytes) -> None:
    text = f'[ {{ name = "hello-1.0"; outPath = "{HELLO}"; }} '.encode() + data
    elements, _ = parse_manifest_nix(text.decode("utf-8", "surrogateescape"))
    assert elements[0].name == "hello-1.0"


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    elements, problems = parse_manifest_nix("[" + "[" * 5000 + "]" * 5000 + "]")
    assert elements == ()
    assert any("nested too deeply" in p for p in problems)


# --- manifest.json --------------------------------------------------------------------------------


@needs_nix
@pytest.mark.nix
def test_reads_the_manifest_nix_profile_writes(tmp_path: Path, hello_path: str) -> None:
    profile = tmp_path / "profile"
    argv = ["nix", "--extra-experimental-features", "nix-command flakes", *NIX, "profile", "install"]
    subprocess.run([*argv, "--profile", str(profile), hello_path], check=True, capture_output=True)
    text = (profile / "manifest.json").read_text()
    elements, problems = parse_manifest_json(text)
    assert problems == ()
    [hello] = elements
    assert hello.store_paths == (hello_path,)
    assert hello.pname == "hello"
    assert hello.tool is ProfileTool.NIX_PROFILE
    # nix 2.8 writes version 2 (removal by store path); nix >= 2.20 version 3 (removal by name)
    assert hello.remove_key in (hello_path, "hello")


def test_version_1_uses_uri_and_attr_path_names_the_element() -> None:
    text = json.dumps(
        {
            "version": 1,
            "elements": [
                {
                    "active": True,
                    "attrPath": "legacyPackages.x86_64-linux.hello",
                    "originalUri": "flake:nixpkgs",
                    "uri": "github:NixOS/nixpkgs/abc",
                    "storePaths": [HELLO],
                }
            ],
        }
    )
    [hello], problems = parse_manifest_json(text)
    assert problems == ()
    assert (hello.name, hello.url, hello.remove_key) == ("hello", "github:NixOS/nixpkgs/abc", HELLO)


def test_version_2_list_with_url() -> None:
    text = json.dumps(
        {"version": 2, "elements": [{"active": False, "storePaths": [CURL_BIN, CURL_MAN], "url": "path:/x"}]}
    )
    [curl], problems = parse_manifest_json(text)
    assert problems == ()
    assert (curl.name, curl.active, curl.url, curl.store_paths) == ("curl", False, "path:/x", (CURL_BIN, CURL_MAN))


def test_version_3_elements_are_keyed_by_name() -> None:
    text = json.dumps(
        {
            "version": 3,
            "elements": {
                "hello": {"active": True, "priority": 5, "storePaths": [HELLO], "attrPath": "packages.x.hello"},
                "curl-1": {"active": True, "storePaths": [CURL_BIN]},
            },
        }
    )
    elements, problems = parse_manifest_json(text)
    assert problems == ()
    assert {(e.name, e.remove_key) for e in elements} == {("hello", "hello"), ("curl-1", "curl-1")}


def test_bad_json_elements_are_reported_and_the_rest_kept() -> None:
    text = json.dumps(
        {
            "version": 3,
            "elements": {
                "good": {"storePaths": [HELLO]},
                "nopaths": {"active": True},
                "outside": {"storePaths": ["/usr/bin/x"]},
                "scalar": 3,
            },
        }
    )
    elements, problems = parse_manifest_json(text, "m.json")
    assert [e.name for e in elements] == ["good"]
    assert problems == (
        "m.json:1: element 'nopaths': element has no storePaths",
        "m.json:1: element 'outside': element has a storePath outside /nix/store",
        "m.json:1: element 'scalar': element is not an object",
    )


def test_unknown_version_is_read_with_a_warning() -> None:
    text = json.dumps({"version": 9, "elements": {"hello": {"storePaths": [HELLO]}}})
    elements, problems = parse_manifest_json(text)
    assert [e.name for e in elements] == ["hello"]
    assert problems == ("manifest.json:1: unknown manifest version 9; read as version 3",)


@pytest.mark.parametrize("text", ["", "[]", '{"version": 2}', "{", '{"version": 2, "elements": 3}'])
def test_unreadable_manifest_json_gives_problems(text: str) -> None:
    elements, problems = parse_manifest_json(text)
    assert elements == ()
    assert problems


@given(st.text())
def test_manifest_json_parser_never_raises(text: str) -> None:
    parse_manifest_json(text)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_manifest_json_parser_never_raises_on_any_json(value: object) -> None:
    elements, _ = parse_manifest_json(json.dumps({"version": 3, "elements": value}))
    assert all(store_path_of(p) == p for e in elements for p in e.store_paths)


@given(st.binary())
def test_manifest_json_parser_survives_bad_bytes(data: bytes) -> None:
    parse_manifest_json(data.decode("utf-8", "surrogateescape"))


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hello-1.0", ("hello", "1.0")),
        ("gtk+-3.24.0", ("gtk+", "3.24.0")),
        ("python3.11-requests-2.31.0", ("python3.11-requests", "2.31.0")),
        ("curl-8.4.0-bin", ("curl", "8.4.0-bin")),
        ("nixos-system-host-24.05", ("nixos-system-host", "24.05")),
        ("plain", ("plain", "")),
    ],
)
def test_derivation_names_split_like_nix(name: str, expected: tuple[str, str]) -> None:
    assert parse_drv_name(name) == expected
