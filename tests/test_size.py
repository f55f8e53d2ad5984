"""Short functions and modules: every function of the package at most 60 lines, every module at
most 450 (a source scan), so each reads in one sitting."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meter_simulator

PACKAGE = Path(meter_simulator.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def function_lines(source: str) -> dict[str, int]:
    """Every function and method by its qualified name (Class.method, outer.inner), with its length
    in lines from the def to its last line, decorators left out."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_every_function_is_at_most_60_lines(path):
    long = {name: lines for name, lines in function_lines(path.read_text(encoding="utf-8")).items()
            if lines > MAX_FUNCTION_LINES}
    assert not long, f"{module_id(path)}: longer than {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_every_module_is_at_most_450_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module_id(path)}: {lines} lines, more than {MAX_MODULE_LINES}"


def test_function_lines_counts_from_the_def_to_the_last_line():
    source = ("@decorated\ndef f():\n    return 1\n\n\nclass K:\n    def m(self):\n"
              "        def inner():\n            pass\n        return inner\n")
    assert function_lines(source) == {"f": 2, "K.m": 4, "K.m.inner": 2}
