"""The region editor's geometry, through Node's own test runner when Node is installed."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_region_editor_geometry():
    result = subprocess.run([NODE, "--test", str(ROOT / "tests" / "js" / "editor.test.js")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
