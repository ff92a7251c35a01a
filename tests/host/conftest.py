"""Fixtures that stand up the stand-in WebUI with tiny checkpoints and the real script."""

import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "fake_webui"
if str(FAKE) not in sys.path:
    sys.path.insert(0, str(FAKE))

from modules import errors, script_callbacks, shared  # noqa: E402
from standin import WebUI  # noqa: E402


@pytest.fixture
def webui(tmp_path):
    from lib_fusion.models import CACHE

    shared.opts = shared.default_opts()
    shared.state.reset()
    errors.reported.clear()
    CACHE.unload()
    host = WebUI(tmp_path)
    yield host
    CACHE.unload()
    assert script_callbacks.registered_count() == 0, "a callback outlived the generation"
