"""The region editor's geometry, through Node's own test runner when Node is installed."""

import os
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


CHROMIUM = os.environ.get("MODEL_FUSION_CHROMIUM")


def _has_playwright() -> bool:
    if NODE is None:
        return False
    found = subprocess.run([NODE, "-e", "require.resolve('playwright-core')"], capture_output=True, cwd=ROOT)
    return found.returncode == 0


@pytest.mark.skipif(not CHROMIUM or not _has_playwright(), reason="opt-in: set MODEL_FUSION_CHROMIUM and install playwright-core for Node")
def test_region_editor_in_a_browser():
    result = subprocess.run([NODE, str(ROOT / "tests" / "js" / "editor.browser.js")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


WEBUI = os.environ.get("MODEL_FUSION_WEBUI_URL")


@pytest.mark.skipif(
    not CHROMIUM or not WEBUI or not _has_playwright(),
    reason="opt-in: set MODEL_FUSION_CHROMIUM and MODEL_FUSION_WEBUI_URL (a WebUI with this extension), install playwright-core for Node",
)
def test_the_accordion_in_a_real_webui():
    """A preset, the schedule in words, the numbers a generation sends, an old infotext pasted back."""
    import requests

    # Forge and Neo load the checkpoint at their first generation, and the schedule line counts
    # steps only once a model is there: one tiny image first (the browser test needs --api anyway).
    tiny = {"prompt": "a lion", "steps": 1, "width": 64, "height": 64}
    requests.post(f"{WEBUI.rstrip('/')}/sdapi/v1/txt2img", json=tiny, timeout=600).raise_for_status()
    script = ROOT / "tests" / "js" / "accordion.browser.js"
    result = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
