"""Opt-in: the fusion's Forge CFG rule against a real Forge's (or Forge Neo's) own code.

    MODEL_FUSION_FORGE_ROOT=<checkout> MODEL_FUSION_FORGE_PYTHON=<its venv's python> pytest tests/webui

Runs ``forge_cfg_check.py`` with that host's Python: its ``sampling_function_inner`` over
``AND`` sub-prompts with weights, at CFG 7, 3.5 and 1 (its shortcut), must equal the extension's
``weighted_mean`` combine bit for bit. No server and no weights are needed.
"""

import os
import subprocess
from pathlib import Path

import pytest

FORGE_ROOT = os.environ.get("MODEL_FUSION_FORGE_ROOT")
FORGE_PYTHON = os.environ.get("MODEL_FUSION_FORGE_PYTHON")


@pytest.mark.skipif(not (FORGE_ROOT and FORGE_PYTHON), reason="set MODEL_FUSION_FORGE_ROOT and MODEL_FUSION_FORGE_PYTHON")
def test_the_forge_cfg_rule_is_the_hosts_own_bit_for_bit():
    script = Path(__file__).with_name("forge_cfg_check.py")
    result = subprocess.run([FORGE_PYTHON, str(script)], cwd=FORGE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("weights", "worst"))]
    assert len(lines) == 13 and lines[-1] == "worst 0.0", "\n".join(lines)
