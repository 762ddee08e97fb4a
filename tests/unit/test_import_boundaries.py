"""The layers stay apart (DESIGN.md, "Layout"): an AST check of every module's imports.

- `capture/` (which reads the host) never reaches `compare/` and `compare/` never reaches
  `capture/`, not even through another module: both depend on the records in `live/`.
- `live/` reaches neither, nor anything that reads the machine (`rootfs`, `process`).
- The ground floor (`text`, `models`, `redact`) imports nothing of nixdrift above it.
- Comparators and live records do no I/O, as far as an AST can tell: only pure standard-library
  modules, no `open`/`print`/`exec`, no file methods (`read_text`, `iterdir`, ...).

Imports inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "daemon" / "nixdrift"

# What a comparator or a live record may import from the standard library: nothing that touches
# files, processes, the network, the clock or the log.
PURE_STDLIB = frozenset(
    {
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "fnmatch",
        "functools",
        "hashlib",
        "ipaddress",
        "itertools",
        "json",
        "math",
        "operator",
        "posixpath",
        "re",
        "shlex",
        "string",
        "typing",
    }
)
IO_BUILTINS = frozenset({"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"})
IO_METHODS = frozenset(
    {
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "iterdir",
        "glob",
        "rglob",
        "readlink",
        "unlink",
        "mkdir",
        "rmdir",
        "touch",
        "scandir",
        "listdir",
        "lstat",
        "chmod",
        "chown",
    }
)
# Modules that read or change the machine: neither a comparator nor a live record may reach them.
MACHINE = ("nixdrift.rootfs", "nixdrift.capture", "nixdrift.service", "nixdrift.sinks")
# ... nor import these directly. (They are reached through nixdrift/declared/__init__.py, which loads
# the evaluator when declared.model is imported: a load, not a call.)
RUNS_PROCESSES = ("nixdrift.process", "nixdrift.declared.nix", "nixdrift.declared.evaluate")
GROUND_FLOOR = frozenset({"nixdrift.text", "nixdrift.models", "nixdrift.redact"})


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # dotted, e.g. "nixdrift.compare.etc"
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def module_from_source(name: str, source: str, is_package: bool = False) -> Module:
    return Module(name, ast.parse(source, filename=name), is_package)


@functools.cache
def all_modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = module_from_source(name, path.read_text(), is_package)
    return found


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_names(module: Module) -> Iterator[str]:
    """Every module this one imports, anywhere in its body (dotted names, as written or resolved)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            yield base
            # `from nixdrift.capture import etc` imports the module nixdrift.capture.etc
            yield from (f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in all_modules())


def nixdrift_imports(module: Module) -> set[str]:
    """The nixdrift modules it imports directly, with the packages whose __init__ runs on the way."""
    out: set[str] = set()
    for name in imported_names(module):
        if name != "nixdrift" and not name.startswith("nixdrift."):
            continue
        parts = name.split(".")
        out.update(p for p in (".".join(parts[:i]) for i in range(2, len(parts) + 1)) if p in all_modules())
    return out


def reaches(name: str) -> set[str]:
    """Every nixdrift module importing `name` loads (transitively), itself excluded."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in nixdrift_imports(all_modules()[todo.pop()]):
            if dep not in seen and dep != name:
                seen.add(dep)
                todo.append(dep)
    return seen


def under(names: set[str], *prefixes: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def io_uses(module: Module) -> list[str]:
    """What in a module's code looks like I/O: impure stdlib imports, I/O builtins, file methods."""
    found: list[str] = []
    for name in imported_names(module):
        top = name.split(".")[0]
        if top != "nixdrift" and name not in PURE_STDLIB:
            found.append(f"imports {name}")
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in IO_BUILTINS:
            found.append(f"line {node.lineno}: calls {node.func.id}()")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in IO_METHODS:
            found.append(f"line {node.lineno}: calls .{node.func.attr}()")
    return found


def modules_in(package: str) -> list[str]:
    return sorted(under(set(all_modules()), package))


def test_the_layers_exist_and_compare_reads_live_records() -> None:
    # the check is only worth something if it sees the real graph
    assert "nixdrift.live.etc" in nixdrift_imports(all_modules()["nixdrift.compare.etc"])
    assert "nixdrift.live.etc" in nixdrift_imports(all_modules()["nixdrift.capture.etc"])
    assert len(modules_in("nixdrift.live")) >= 10


@pytest.mark.parametrize("name", modules_in("nixdrift.compare"))
def test_compare_never_reaches_capture(name: str) -> None:
    assert under(reaches(name), "nixdrift.capture") == set()


@pytest.mark.parametrize("name", modules_in("nixdrift.capture"))
def test_capture_never_reaches_compare(name: str) -> None:
    assert under(reaches(name), "nixdrift.compare") == set()


@pytest.mark.parametrize("name", modules_in("nixdrift.live"))
def test_live_reaches_neither_capture_compare_nor_the_machine(name: str) -> None:
    assert under(reaches(name), "nixdrift.compare", *MACHINE) == set()
    assert under(set(imported_names(all_modules()[name])), *RUNS_PROCESSES) == set()


@pytest.mark.parametrize("name", sorted(GROUND_FLOOR))
def test_ground_floor_imports_nothing_above_it(name: str) -> None:
    assert reaches(name) - GROUND_FLOOR - {"nixdrift"} == set()


@pytest.mark.parametrize("name", modules_in("nixdrift.compare"))
def test_comparators_reach_nothing_that_reads_the_machine(name: str) -> None:
    assert under(reaches(name), *MACHINE) == set()
    assert under(set(imported_names(all_modules()[name])), *RUNS_PROCESSES) == set()


@pytest.mark.parametrize("name", [*modules_in("nixdrift.compare"), *modules_in("nixdrift.live")])
def test_comparators_and_live_records_do_no_io(name: str) -> None:
    assert io_uses(all_modules()[name]) == []


# -- the checker itself finds what it is there to find ------------------------------------------


def test_a_lazy_relative_import_of_capture_is_seen() -> None:
    fake = module_from_source(
        "nixdrift.compare.fake",
        "def f():\n    from ..capture import etc\n    return etc\n",
    )
    assert "nixdrift.capture.etc" in nixdrift_imports(fake)


def test_io_in_a_comparator_is_seen() -> None:
    fake = module_from_source(
        "nixdrift.compare.fake",
        "import os\nimport subprocess\nfrom pathlib import Path\n"
        "def f(p):\n    os.listdir(p)\n    Path(p).read_text()\n    return open(p)\n",
    )
    assert io_uses(fake) == [
        "imports os",
        "imports subprocess",
        "imports pathlib",
        "line 5: calls .listdir()",
        "line 6: calls .read_text()",
        "line 7: calls open()",
    ]
