"""Python values rendered as Nix source, for the host.nix a fixture host declares."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_'-]*$")
_KEYWORDS = frozenset({"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"})


@dataclass(frozen=True, slots=True)
class Raw:
    """Nix source inserted as it is (e.g. `pkgs.mkPkg { ... }`)."""

    text: str


def string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def attr(name: str) -> str:
    return name if _IDENT.match(name) and name not in _KEYWORDS else string(name)


def render(value: object, indent: int = 0) -> str:
    pad = "  " * (indent + 1)
    match value:
        case Raw(text=text):
            return text
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case str():
            return string(value)
        case None:
            return "null"
        case Mapping():
            if not value:
                return "{ }"
            body = "".join(f"{pad}{attr(str(k))} = {render(v, indent + 1)};\n" for k, v in value.items())
            return "{\n" + body + "  " * indent + "}"
        case Sequence():
            if not value:
                return "[ ]"
            return "[ " + " ".join(_item(v, indent) for v in value) + " ]"
    raise TypeError(f"cannot render {type(value).__name__} as Nix")


def _item(value: object, indent: int) -> str:
    text = render(value, indent)
    # a function application inside a list needs parentheses
    return f"({text})" if isinstance(value, Raw) and " " in text else text


def package(pname: str, version: str, bins: Sequence[str] | None = None) -> Raw:
    fields = {"pname": pname, "version": version}
    extra = f" bins = {render(list(bins))};" if bins else ""
    inner = " ".join(f"{k} = {string(v)};" for k, v in fields.items())
    return Raw(f"pkgs.mkPkg {{ {inner}{extra} }}")
