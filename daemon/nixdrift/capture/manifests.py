"""Parsers for the manifests of Nix profiles: nix-env's `manifest.nix` and `nix profile`'s `manifest.json`.

Both are pure functions `parse_*(text) -> (elements, problems)` that never raise: an entry that
cannot be read goes into problems and the rest is kept. No nix process is spawned: a host may have
dozens of profiles and a check must stay fast.

manifest.nix is a Nix list of attribute sets as nix-env prints them (`name`, `outPath`, one
attribute per output holding `outPath`, `outputs`, `meta`, ...). Values nix cannot print back
(`<LAMBDA>`, `«thunk»`, `«repeated»`) appear as opaque tokens and are kept as such.

manifest.json (nix/src/nix/profile.cc): version 1 has `elements` as a list with `uri` and
`originalUri`; version 2 the same list with `url` and `originalUrl`; version 3 has `elements` as an
object keyed by the element's name (the name `nix profile remove` takes). Every element holds
`storePaths`, `active` and, when installed from a flake, `attrPath`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nixdrift.capture.parsed import Parsed
from nixdrift.live.packages import ProfileElement, ProfileTool, store_name, store_path_of

STORE_DIR = "/nix/store/"


def parse_drv_name(name: str) -> tuple[str, str]:
    """(pname, version) as Nix's DrvName splits them: at the first dash not followed by a letter."""
    for i, ch in enumerate(name):
        if ch == "-" and i + 1 < len(name) and not name[i + 1].isalpha():
            return name[:i], name[i + 1 :]
    return name, ""


# --- manifest.nix -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<ind>''(?:[^']|'(?!')|''['$\\])*'')
  | (?P<num>-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?(?![A-Za-z_]))
  | (?P<path>[A-Za-z0-9._+~-]*/[A-Za-z0-9._+/-]+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_'-]*)
  | (?P<opaque><[^<>\n]*>|«[^»\n]*»)
  | (?P<punct>[\[\]{}=;.])
  | (?P<bad>.)
    """,
    re.S | re.X,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_MAX_DEPTH = 64


class _ParseError(Exception):
    def __init__(self, line: int, why: str) -> None:
        super().__init__(why)
        self.line = line
        self.why = why


# a token: (kind, text, offset in the text); line numbers are computed only for problems
_Tok = tuple[str, str, int]
# attributes nixdrift never reads: skipped without building their (large) values
_SKIPPED = frozenset({"meta"})


@dataclass(frozen=True, slots=True)
class Opaque:
    """A value nix printed but that cannot be read back (`<LAMBDA>`, `«thunk»`)."""

    text: str


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class _NixReader:
    """Recursive descent over the tokens of a printed Nix value (no evaluation)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = [
            (m.lastgroup or "bad", m.group(), m.start()) for m in _TOKEN.finditer(text) if m.lastgroup != "ws"
        ]
        self.pos = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def line_of(self, tok: _Tok | None) -> int:
        offset = tok[2] if tok is not None else len(self.text)
        return self.text.count("\n", 0, offset) + 1

    def error(self, tok: _Tok | None, why: str) -> _ParseError:
        return _ParseError(self.line_of(tok), why)

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise self.error(None, "unexpected end of file")
        self.pos += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok[1] != text:
            raise self.error(tok, f"expected {text!r}, found {tok[1][:40]!r}")

    def value(self, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.error(self.peek(), "nested too deeply")
        tok = self.take()
        match tok[0], tok[1]:
            case "punct", "[":
                items: list[Any] = []
                while (nxt := self.peek()) is not None and nxt[1] != "]":
                    items.append(self.value(depth + 1))
                self.expect("]")
                return items
            case "punct", "{":
                return self.attrs(depth)
            case "str", text:
                return _unescape(text[1:-1])
            case "ind", text:
                return text[2:-2]
            case "num", text:
                return float(text) if any(c in text for c in ".eE") else int(text)
            case "id", "true" | "false":
                return tok[1] == "true"
            case "id", "null":
                return None
            case "path", text:
                return text
            case "opaque", text:
                return Opaque(text)
        raise self.error(tok, f"unexpected {tok[1][:40]!r}")

    def attrs(self, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (nxt := self.peek()) is not None and nxt[1] != "}":
            keys = [self.key()]
            while (dot := self.peek()) is not None and dot[1] == ".":
                self.take()
                keys.append(self.key())
            self.expect("=")
            if depth == 0 and keys[0] in _SKIPPED:  # an entry's own attributes are at depth 0
                self.skip_value()
                self.expect(";")
                continue
            value = self.value(depth + 1)
            self.expect(";")
            target = result
            for key in keys[:-1]:
                inner = target.get(key)
                target[key] = inner = inner if isinstance(inner, dict) else {}
                target = inner
            target[keys[-1]] = value
        self.expect("}")
        return result

    def key(self) -> str:
        tok = self.take()
        if tok[0] == "id":
            return tok[1]
        if tok[0] == "str":
            return _unescape(tok[1][1:-1])
        raise self.error(tok, f"expected an attribute name, found {tok[1][:40]!r}")

    def skip_value(self) -> None:
        """Skip one value without reading it: a scalar, or a bracketed value up to its closing bracket."""
        first = self.peek()
        if first is None or first[1] not in ("[", "{"):
            self.pos += 1
            return
        depth = 0
        toks = self.toks
        while self.pos < len(toks):
            text = toks[self.pos][1]
            if text in ("[", "{"):
                depth += 1
            elif text in ("]", "}"):
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return
            self.pos += 1


def _nix_env_element(entry: Any) -> ProfileElement | str:
    """An element from one attrset of manifest.nix, or why it is not one."""
    if not isinstance(entry, dict):
        return "entry is not an attribute set"
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return "entry has no name"
    paths: list[str] = []
    out_path = entry.get("outPath")
    if isinstance(out_path, str):
        paths.append(out_path)
    outputs = entry.get("outputs")
    for output in outputs if isinstance(outputs, list) else ["out"]:
        value = entry.get(output) if isinstance(output, str) else None
        path = value.get("outPath") if isinstance(value, dict) else None
        if isinstance(path, str) and path not in paths:
            paths.append(path)
    store_paths = tuple(p for p in (store_path_of(p) for p in paths) if p)
    if not store_paths:
        return f"entry {name!r} has no store path"
    pname, version = parse_drv_name(name)
    return ProfileElement(name, pname, version, store_paths, ProfileTool.NIX_ENV, remove_key=name)


def parse_manifest_nix(text: str, source: str = "manifest.nix") -> tuple[tuple[ProfileElement, ...], tuple[str, ...]]:
    """The packages of a nix-env profile's manifest.nix, and the entries that could not be read."""
    parsed = read_manifest_nix(text, source)
    return parsed.records, parsed.all_problems


def read_manifest_nix(text: str, source: str = "manifest.nix") -> Parsed[ProfileElement]:
    """As parse_manifest_nix; `unreadable` when it is not a (complete) list."""
    reader = _NixReader(text)
    elements: list[ProfileElement] = []
    problems: list[str] = []
    first = reader.peek()
    if first is None:
        return Parsed((), (), f"{source}:1: empty manifest")
    if first[1] != "[":
        return Parsed((), (), f"{source}:{reader.line_of(first)}: expected a list, found {first[1][:40]!r}")
    reader.take()
    while (tok := reader.peek()) is not None and tok[1] != "]":
        start = reader.pos
        try:
            entry = reader.value()
        except _ParseError as exc:
            problems.append(f"{source}:{exc.line}: {exc.why}")
            reader.pos = start
            reader.skip_value()
            continue
        result = _nix_env_element(entry)
        if isinstance(result, str):
            problems.append(f"{source}:{reader.line_of(tok)}: {result}")
        else:
            elements.append(result)
    unreadable = f"{source}:{reader.line_of(None)}: unterminated list (cut short?)" if reader.peek() is None else None
    return Parsed(tuple(elements), tuple(problems), unreadable)


# --- manifest.json ------------------------------------------------------------------------------


def _element_name(e: dict[str, Any], store_paths: tuple[str, ...]) -> str:
    """The name newer nix gives a list element (v1/v2): the attribute's name, else the package's."""
    attr = e.get("attrPath")
    if isinstance(attr, str) and attr:
        last = attr.rsplit(".", 1)[-1]
        if last != "default":
            return last
    return parse_drv_name(store_name(store_paths[0]))[0]


def _json_element(key: str | None, e: Any, url_key: str) -> ProfileElement | str:
    if not isinstance(e, dict):
        return "element is not an object"
    raw_paths = e.get("storePaths")
    if not isinstance(raw_paths, list) or not raw_paths:
        return "element has no storePaths"
    store_paths = tuple(p for p in (store_path_of(p) if isinstance(p, str) else None for p in raw_paths) if p)
    if len(store_paths) != len(raw_paths):
        return "element has a storePath outside /nix/store"
    pname, version = parse_drv_name(store_name(store_paths[0]))
    name = key if key is not None else _element_name(e, store_paths)
    attr = e.get("attrPath")
    url = e.get(url_key)
    return ProfileElement(
        name=name,
        pname=pname,
        version=version,
        store_paths=store_paths,
        tool=ProfileTool.NIX_PROFILE,
        active=e.get("active") is not False,
        attr_path=attr if isinstance(attr, str) else "",
        url=url if isinstance(url, str) else "",
        # a v3 name is what `nix profile remove` takes; older nix only matches store paths
        remove_key=key if key is not None else store_paths[0],
    )


def parse_manifest_json(text: str, source: str = "manifest.json") -> tuple[tuple[ProfileElement, ...], tuple[str, ...]]:
    """The packages of a `nix profile` profile's manifest.json (versions 1 to 3)."""
    parsed = read_manifest_json(text, source)
    return parsed.records, parsed.all_problems


def read_manifest_json(text: str, source: str = "manifest.json") -> Parsed[ProfileElement]:
    """As parse_manifest_json; `unreadable` when it is not a manifest object (cut short, not JSON)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", 1)
        return Parsed((), (), f"{source}:{line}: not JSON (cut short?): {getattr(exc, 'msg', exc)}")
    except RecursionError:
        return Parsed((), (), f"{source}:1: nested too deeply")
    if not isinstance(data, dict):
        return Parsed((), (), f"{source}:1: not a JSON object")
    notes: tuple[str, ...] = ()
    version = data.get("version")
    if version not in (1, 2, 3):
        notes = (f"{source}:1: unknown manifest version {version!r}; read as version 3",)
    url_key = "uri" if version == 1 else "url"
    raw = data.get("elements")
    items: list[tuple[str | None, Any]]
    if isinstance(raw, dict):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(None, v) for v in raw]
    else:
        return Parsed((), (), f"{source}:1: no elements", notes)
    elements: list[ProfileElement] = []
    problems: list[str] = []
    for index, (key, entry) in enumerate(items):
        result = _json_element(key, entry, url_key)
        if isinstance(result, str):
            label = repr(key) if key is not None else f"#{index}"
            problems.append(f"{source}:1: element {label}: {result}")
        else:
            elements.append(result)
    return Parsed(tuple(elements), tuple(problems), None, notes)
