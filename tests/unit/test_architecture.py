"""The wings and their rule, read from the code's own imports (so the rule cannot rot):

    fusion <- methods <- arguments <- engine <- host <- ui, and the top (api, cli) and the script;
    the methods (one module each) import only the maths; the argument contract only the
    methods (whose fields make its table's "read by"); no import circle anywhere;
    only host/ (and the script) imports the WebUI (``modules``, Forge's ``backend``);
    the maths (fusion/) imports torch and the standard library only.

docs/architecture.md says the same in words.
"""

import ast
import sys
from pathlib import Path

from tests.code_imports import imported_modules

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lib_fusion"
MAY_IMPORT = {
    "fusion": {"fusion"},
    "methods": {"methods", "fusion"},
    "arguments": {"arguments", "methods"},
    "engine": {"engine", "fusion", "methods", "arguments"},
    "host": {"host", "engine", "fusion", "methods", "arguments"},
    "ui": {"ui", "host", "engine", "fusion", "methods", "arguments"},
    "top": {"top", "ui", "host", "engine", "fusion", "methods", "arguments"},
}
"""Which wings a module of each wing may import (``top``: lib_fusion's own modules, api and cli)."""
WEBUI = {"modules", "backend"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else "top"


def imports_of(path: Path) -> set[str]:
    """Every module the file imports, ``from package import name`` counted as ``package.name``
    when that names a module of ours."""
    return {name for node in ast.walk(ast.parse(path.read_text(), str(path))) for name in imported_modules(node, MODULES.__contains__)}


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(path): path for path in FILES}
GRAPH = {name: {other for other in imports_of(path) if other in MODULES and other != name} for name, path in MODULES.items()}


def test_each_wing_imports_only_what_its_rule_allows():
    wrong = [
        f"{name} ({wing(name)}) imports {other} ({wing(other)})"
        for name, others in GRAPH.items()
        for other in others
        if wing(other) not in MAY_IMPORT[wing(name)] and other != "lib_fusion"
    ]
    assert not wrong, "\n".join(wrong)
    assert {wing(name) for name in MODULES} == set(MAY_IMPORT), "every wing holds modules"


def test_no_import_circle():
    done, active, circles = set(), [], []

    def visit(name: str) -> None:
        if name in active:
            circles.append(" -> ".join(active[active.index(name) :] + [name]))
            return
        if name in done:
            return
        active.append(name)
        for other in sorted(GRAPH[name]):
            if other.startswith(name + ".") or name == "lib_fusion":
                continue  # a package's __init__ re-exporting its own modules is no circle
            visit(other)
        active.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)
    assert not circles, "\n".join(circles)


def test_only_the_host_wing_imports_the_webui():
    outside = [
        f"{name} imports {other}"
        for name, path in MODULES.items()
        if wing(name) != "host"
        for other in imports_of(path)
        if other.split(".")[0] in WEBUI
    ]
    assert not outside, outside


def test_the_maths_imports_torch_and_the_standard_library_only():
    allowed = {"torch", "__future__", *sys.stdlib_module_names}
    foreign = [
        f"{name} imports {other}"
        for name, path in MODULES.items()
        if wing(name) == "fusion"
        for other in imports_of(path)
        if other.split(".")[0] not in allowed and not other.startswith("lib_fusion.fusion")
    ]
    assert not foreign, foreign


def _names_of_methods() -> set[str]:
    from lib_fusion.arguments.fields import METHOD_NAMES

    return set(METHOD_NAMES)


def test_nothing_but_the_method_objects_compares_a_method_name_to_a_string():
    """A method is one object (:mod:`lib_fusion.methods`): every other module asks it, so no
    comparison in the code has a method's name on one side and ``method`` on the other."""
    names, found = _names_of_methods(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "methods":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            texts = [ast.unparse(side) for side in sides]
            constants = {side.value for side in sides if isinstance(side, ast.Constant)}
            constants |= {
                item.value
                for side in sides
                if isinstance(side, (ast.Tuple, ast.List, ast.Set))
                for item in side.elts
                if isinstance(item, ast.Constant)
            }
            if constants & names and any("method" in text for text in texts):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_every_method_is_one_module_whose_object_answers_for_it():
    from lib_fusion.arguments.fields import TWO_MODEL_METHODS
    from lib_fusion.methods import METHODS
    from lib_fusion.methods.base import Method

    assert set(METHODS) == _names_of_methods()
    assert {name for name, method in METHODS.items() if method.two_model} == set(TWO_MODEL_METHODS)
    modules = [type(method).__module__ for method in METHODS.values()]
    assert len(set(modules)) == len(modules) and all(module.startswith("lib_fusion.methods.") for module in modules)
    for name, method in METHODS.items():
        assert method.name == name and method.label
        assert method.two_model != method.lays_out_regions
        assert method.reads("models")  # every method reads it, so that a list sent with one other than SNB is refused
        if method.two_model:  # it has a fused step of its own
            assert type(method).fused_step is not Method.fused_step
    assert [name for name, method in METHODS.items() if method.fuses_several] == ["snb"]
