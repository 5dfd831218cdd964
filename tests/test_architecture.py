"""The architecture holds: every module of src/envcap is parsed (ast, nothing imported)
and its imports checked against docs/architecture.md."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "envcap"

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
