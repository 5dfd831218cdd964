"""The architecture holds: every module of src/envcap is parsed (ast, nothing imported)
and its imports checked against docs/architecture.md."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "envcap"
DOC = REPO / "docs" / "architecture.md"

# The modules that start the command line (python -m envcap, the console script).
ENTRY_POINTS = {"envcap.__main__"}

# The fences: the only modules that may import these.
FENCED = {
    "subprocess": {"envcap.core.proc"},
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the module, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # ``from . import plan`` names a module too.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def test_the_scan_sees_every_module_and_resolves_relative_imports() -> None:
    found = dict(modules())
    assert "envcap.core.proc" in found and "envcap.cli" in found
    names = {target for _, target in imports("envcap.runs.runner", found["envcap.runs.runner"])}
    assert "envcap.core.proc" in names and "envcap.runs.session" in names


def test_only_the_fence_imports_subprocess() -> None:
    offending = []
    for name, path in modules():
        for line, target in imports(name, path):
            root = target.split(".")[0]
            if root in FENCED and name not in FENCED[root]:
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} imports {target} "
                                 f"(only {', '.join(sorted(FENCED[root]))} may: start programs through it)")
    assert not offending, "\n".join(offending)


def layer_table() -> dict[str, set[str] | None]:
    """docs/architecture.md's table: folder -> the folders it may import (None: all)."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- layers: begin -->", 1)[1].split("<!-- layers: end -->", 1)[0]
    table: dict[str, set[str] | None] = {}
    for row in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        folder = cells[0].strip("`")
        table[folder] = None if cells[1] == "every folder" else set(re.findall(r"`([a-z_]+)`", cells[1]))
    return table


def folder_of(module: str) -> str | None:
    """The folder a module belongs to (``envcap.runs.git`` -> ``runs``); None for the
    package itself and its top-level modules."""
    parts = module.split(".")
    if len(parts) < 2 or not (PACKAGE / parts[1]).is_dir():
        return None
    return parts[1]


def violations(table: dict[str, set[str] | None]) -> list[str]:
    out = []
    for name, path in modules():
        here = folder_of(name)
        for line, target in imports(name, path):
            if target != "envcap" and not target.startswith("envcap."):
                continue
            there = folder_of(target)
            where = f"{path.relative_to(REPO)}:{line}: {name} imports {target}"
            if there == "cli" and here != "cli" and name not in ENTRY_POINTS:
                out.append(f"{where}: no library module imports the CLI (move the code it needs below cli/)")
            elif here is None or there is None or here == there:
                if here == "core" and there != "core":
                    out.append(f"{where}: core imports nothing of envcap outside core")
            elif table.get(here) is not None and there not in (table[here] or set()):
                allowed = ", ".join(sorted(table[here] or ())) or "no other folder"
                out.append(f"{where}: {here}/ may not import {there}/ (docs/architecture.md allows {allowed})")
    return out


def test_every_folder_has_a_row_in_the_layer_table() -> None:
    table = layer_table()
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    missing = [f for f in folders if f not in table]
    assert not missing, (f"src/envcap/{missing[0]}/ has no row in the layer table of docs/architecture.md: add one "
                         "saying what it does and which folders it may import")
    for folder, allowed in table.items():
        unknown = sorted((allowed or set()) - set(table))
        assert not unknown, f"docs/architecture.md: {folder} may import {unknown}, which has no row"


def test_imports_follow_the_layer_table() -> None:
    offending = violations(layer_table())
    assert not offending, "\n".join(offending)


def test_the_check_fails_on_an_import_the_table_does_not_allow() -> None:
    # The same scan with store/ forbidden to core: every import of core by store is named.
    table = layer_table()
    table["store"] = set()
    found = violations(table)
    assert found and all(v.endswith(": store/ may not import core/ (docs/architecture.md allows no other folder)")
                         for v in found)
    assert any(v.startswith("src/envcap/store/embedded.py:") for v in found)


def table_cycle(table: dict[str, set[str] | None]) -> list[str] | None:
    """A cycle among the table's rows (``[a, b, a]``: a may import b, b may import a), or
    None. "every folder" stands for every other row."""
    edges = {f: sorted((set(table) - {f}) if allowed is None else allowed & set(table))
             for f, allowed in table.items()}
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def walk(folder: str) -> list[str] | None:
        state[folder] = 1
        path.append(folder)
        for there in edges[folder]:
            if state.get(there) == 1:
                return path[path.index(there):] + [there]
            if there not in state and (found := walk(there)):
                return found
        path.pop()
        state[folder] = 2
        return None

    for folder in table:
        if folder not in state and (found := walk(folder)):
            return found
    return None


def rows_out_of_order(table: dict[str, set[str] | None]) -> list[str]:
    """Rows that name a folder listed below them (the table reads as an order, lowest first)."""
    order = list(table)
    return [f"{folder} may import {there}, which is listed below it"
            for i, folder in enumerate(order) if table[folder] is not None
            for there in sorted(table[folder] or ()) if there in order[i:]]


def test_the_layer_table_itself_has_no_cycle() -> None:
    table = layer_table()
    cycle = table_cycle(table)
    assert cycle is None, ("docs/architecture.md's layer table allows a cycle: " + " -> ".join(cycle)
                           + " (move what the lower folder needs below it)")
    assert not rows_out_of_order(table), "\n".join(rows_out_of_order(table))
    # The folders the earlier cycles ran through are now one way only.
    assert "ecosystems" not in (table["probes"] or set())
    assert "builder" not in (table["ecosystems"] or set())


def test_the_cycle_check_fails_on_a_table_with_a_cycle() -> None:
    # Yesterday's table: probes <-> ecosystems, builder <-> ecosystems.
    table = layer_table()
    table["probes"] = {"core", "ecosystems"}
    assert table_cycle(table) in (["probes", "ecosystems", "probes"], ["ecosystems", "probes", "ecosystems"])
    assert "probes may import ecosystems, which is listed below it" in rows_out_of_order(table)
    table = layer_table()
    table["ecosystems"] = (table["ecosystems"] or set()) | {"builder"}
    cycle = table_cycle(table)
    assert cycle is not None and cycle[0] == cycle[-1] and {"ecosystems", "builder"} <= set(cycle)
    # A longer cycle through three rows, and one through the command.
    table = layer_table()
    table["core"] = {"runs"}
    cycle = table_cycle(table)
    assert cycle is not None and "core" in cycle and "runs" in cycle and len(cycle) >= 3
    table = layer_table()
    table["store"] = {"core", "cli"}
    assert table_cycle(table) is not None
