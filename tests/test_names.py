"""One name per concept: no public name is defined in two modules of the package, and no two
public classes share a name, so a name read anywhere means one thing (a source scan)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import meter_simulator

PACKAGE = Path(meter_simulator.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
IGNORED = {"log"}  # every module's logger


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def bound_names(target: ast.expr) -> list[str]:
    """The names an assignment target binds: a, or a and b of a, b = ...; none of a.b = ..."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return bound_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in bound_names(element)]
    return []


def imported(statements: list[ast.stmt]) -> set[str]:
    """Names the statements bind by importing, at module level or in a module-level if or try."""
    names: set[str] = set()
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.If):
            names |= imported(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            names |= imported(node.body + node.orelse + node.finalbody)
    return names


def module_level(statements: list[ast.stmt]) -> list[str]:
    """Names the statements define at module level: functions, classes and assignments, also
    inside a module-level if or try. An import defines nothing of ours, nor does the fallback of
    an optional one (try: import fcntl / except ImportError: fcntl = None)."""
    optional = imported(statements)
    return [name for name in assigned(statements) if name not in optional]


def assigned(statements: list[ast.stmt]) -> list[str]:
    """Names the statements bind by def, class or assignment, in order."""
    names: list[str] = []
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(name for target in node.targets for name in bound_names(target))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            names.extend(bound_names(node.target))
        elif isinstance(node, ast.If):
            names.extend(assigned(node.body + node.orelse))
        elif isinstance(node, ast.Try):
            handlers = [statement for handler in node.handlers for statement in handler.body]
            names.extend(assigned(node.body + handlers + node.orelse + node.finalbody))
    return names


def public(name: str) -> bool:
    return not name.startswith("_") and name not in IGNORED


def definitions() -> dict[str, set[str]]:
    """Public module-level name -> the modules that define it."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in MODULES:
        for name in module_level(ast.parse(path.read_text(encoding="utf-8")).body):
            if public(name):
                found[name].add(module_id(path))
    return found


def classes() -> dict[str, list[str]]:
    """Public class name -> where each class of that name is defined (module:line), nested ones too."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and public(node.name):
                found[node.name].append(f"{module_id(path)}:{node.lineno}")
    return found


def test_no_public_name_is_defined_in_two_modules():
    twice = {name: sorted(modules) for name, modules in definitions().items() if len(modules) > 1}
    assert not twice, f"defined in more than one module: {twice}"


def test_no_two_public_classes_share_a_name():
    twice = {name: places for name, places in classes().items() if len(places) > 1}
    assert not twice, f"classes of one name: {twice}"


def test_the_scan_sees_what_a_module_defines():
    tree = ast.parse("A = 1\nb, (c, _d) = 2, (3, 4)\nx: int = 5\nclass K: pass\ndef f(): pass\nK.attr = 6\n"
                     "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None\n"
                     "if True:\n    g = 1\nimport os\nfrom json import dumps\n")
    assert module_level(tree.body) == ["A", "b", "c", "_d", "x", "K", "f", "g"]
    assert {"Control", "make_meter", "METER_TYPES"} <= set(definitions())
