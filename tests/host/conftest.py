"""Fixtures that stand up the stand-in WebUI with tiny checkpoints and the real script."""

import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "fake_webui"
if str(FAKE) not in sys.path:
    sys.path.insert(0, str(FAKE))

from modules import errors, script_callbacks, shared  # noqa: E402
from standin import WebUI  # noqa: E402


def _standin(tmp_path, family):
    from lib_fusion.models import CACHE

    shared.opts = shared.default_opts()
    shared.cmd_opts = shared.default_cmd_opts()
    shared.state.reset()
    errors.reported.clear()
    CACHE.unload()
    script_callbacks.clear_callbacks()  # a fresh process: the script registers its app-level callbacks on import
    host = WebUI(tmp_path, family=family)
    yield host
    CACHE.unload()
    assert script_callbacks.registered_count() == 0, "a callback outlived the generation"


@pytest.fixture
def webui(tmp_path):
    """The stand-in WebUI with SD1-shaped tiny checkpoints (tensor conditioning)."""
    yield from _standin(tmp_path, "sd1")


@pytest.fixture
def sdxl_webui(tmp_path):
    """The stand-in WebUI with SDXL-shaped tiny checkpoints (dict conditioning, size vector)."""
    yield from _standin(tmp_path, "sdxl")
