"""The extension never takes the host down: whatever host module is missing, the script imports
and registers, fusion off is the host's own image, and an enabled fusion either fuses or fails
with the extension's message naming what is missing (never a raw ImportError).

Host modules are reached through ``lib_fusion.host.probe.host_module`` at the moment they are
needed; the only ones imported at module level are those every WebUI that runs scripts has
(``CORE``). Both halves are read from the code itself, so the rule cannot rot: the first test
walks the imports, the second hides every host module the code names, one at a time, from a
fresh interpreter that imports the script as the WebUI does.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.code_imports import imported_modules

ROOT = Path(__file__).resolve().parents[2]
CORE = {"modules.shared", "modules.scripts", "modules.script_callbacks"}
"""What every WebUI that runs scripts has: imported at the top of the script and the host package."""
HOST_PACKAGES = ("modules", "backend")
PROBE = ROOT / "lib_fusion" / "host" / "probe.py"


def _sources() -> list[Path]:
    return [*sorted((ROOT / "lib_fusion").rglob("*.py")), ROOT / "scripts" / "model_fusion.py"]


def _imported(node: ast.AST) -> list[str]:
    """The host modules an import statement names (``from modules import a, b`` names both)."""
    named = imported_modules(node, lambda name: name.rpartition(".")[0] in HOST_PACKAGES)
    return [name for name in named if name.split(".")[0] in HOST_PACKAGES and name not in HOST_PACKAGES]


def named_host_modules() -> set[str]:
    """Every host module the code imports or hands to ``host_module`` by name."""
    names = set()
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names.update(_imported(node))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "host_module" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
    return names


def test_only_the_core_modules_are_imported_at_module_level_and_the_rest_through_the_probe():
    misplaced = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            for name in _imported(node):
                at_top = id(node) in top_level
                if at_top and name not in CORE:
                    misplaced.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name} at import time")
                if not at_top and path != PROBE:
                    misplaced.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name} itself (use probe.host_module)")
    assert not misplaced, "\n".join(misplaced)
    optional = named_host_modules() - CORE
    assert {"modules.sd_hijack", "modules.prompt_parser", "backend.args"} <= optional, "the walk finds the host modules"


CHECK = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from pathlib import Path

from tests.code_imports import imported_modules
import tempfile
import torch
from modules import script_callbacks, shared
from pydantic.v1 import class_validators
import standin

host, hidden_modules = sys.argv[3], json.loads(sys.argv[4])
fusion = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1", "text_encoder": "own", "compare": True, "preview": True}
for hidden in hidden_modules:
    for name in [name for name in sys.modules if name == "lib_fusion" or name.startswith("lib_fusion.")]:
        del sys.modules[name]  # the WebUI imports the script once, with the host as it is
    class_validators._FUNCS.clear()  # pydantic refuses a validator it has seen defined before
    shared.opts, shared.cmd_opts = shared.default_opts(), shared.default_cmd_opts()
    shared.state.reset()
    script_callbacks.clear_callbacks()
    webui = standin.WebUI(Path(tempfile.mkdtemp()), extra_checkpoints=False, host=host, without=(hidden,))
    registered = script_callbacks.registered_count(("app_started", "script_unloaded", "ui_settings", "before_ui"))
    answer = {"hidden": hidden, "registered": registered}
    answer["title"] = webui.script.title()
    webui.build_ui()
    answer["routes"] = sorted(path for _, path in webui.app().routes)
    plain = webui.latents(None, extension=False, steps=2)
    answer["off_is_plain"] = torch.equal(webui.latents({"enabled": False, "model": "expert"}, steps=2), plain)
    try:
        answer["fused"] = not torch.equal(webui.latents(fusion, steps=2), plain)
    except Exception as error:
        answer["error"] = f"{type(error).__name__}: {error}"
    answer["after_is_plain"] = torch.equal(webui.latents(None, extension=False, steps=2), plain)
    print(json.dumps(answer), flush=True)
"""


def test_every_missing_host_module_leaves_the_script_registered_and_fails_only_the_fusion_with_the_message(tmp_path):
    optional = sorted(named_host_modules() - CORE)
    fake = ROOT / "tests" / "host" / "fake_webui"
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    outcomes = set()
    for host in ("a1111", "neo"):
        hidden_modules = [name for name in optional if host != "a1111" or not name.startswith("backend.")]  # A1111 has no backend
        done = subprocess.run(
            [sys.executable, str(script), str(fake), str(ROOT), host, json.dumps(hidden_modules)],
            capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=tmp_path, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{host}:\n{done.stderr[-3000:]}"
        answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert [answer["hidden"] for answer in answers] == hidden_modules
        for answer in answers:
            where = (host, answer)
            assert answer["registered"] == 4 and answer["title"] == "Model Fusion", where
            assert "/model-fusion/v1/models" in answer["routes"], where
            assert answer["off_is_plain"] and answer["after_is_plain"], where
            if "error" in answer:
                assert re.match(rf"^\w+Error: Model Fusion: .*\b{re.escape(answer['hidden'])}\b", answer["error"]), where
            else:
                assert answer["fused"], where
            outcomes.add("error" in answer)
    assert outcomes == {True, False}, "both outcomes occur: the check is blind to neither"
