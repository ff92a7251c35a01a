"""What an import statement of our code names, read from its syntax tree: shared by the tests
that hold the code to its import rules (``tests/unit/test_architecture.py``: the wings;
``tests/host/test_host_modules.py``: the WebUI's modules through the probe)."""

import ast
from typing import Callable


def imported_modules(node: ast.AST, is_module: Callable[[str], bool]) -> list[str]:
    """The modules an import statement names: ``import a.b`` names ``a.b``; ``from a import b``
    names ``a``, and ``a.b`` too where ``is_module`` says that is a module (not a name in it).
    Relative imports and other statements name none."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        submodules = [f"{node.module}.{alias.name}" for alias in node.names]
        return [node.module, *(name for name in submodules if is_module(name))]
    return []
