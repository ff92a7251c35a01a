"""Fixtures that stand up the stand-in WebUI with tiny checkpoints and the real script."""

import pytest
from modules import errors, script_callbacks, shared
from standin import WebUI


def _standin(tmp_path, family, host="a1111", **kind):
    from lib_fusion.engine.checkpoint_cache import CACHE

    shared.opts = shared.default_opts()
    shared.cmd_opts = shared.default_cmd_opts()
    shared.state.reset()
    errors.reported.clear()
    CACHE.unload()
    script_callbacks.clear_callbacks()  # a fresh process: the script registers its app-level callbacks on import
    webui = WebUI(tmp_path, family=family, host=host, **kind)
    yield webui
    CACHE.unload()
    assert script_callbacks.registered_count() == 0, "a callback outlived the generation"


HOSTS = ["a1111", "forge", "neo"]
"""The hosts every host test runs on (AUTOMATIC1111 1.10, Forge main, Forge Neo 2.26)."""
FORGE_FAMILY = ["forge", "neo"]
KDIFFUSION_ONLY = {"DDIM", "UniPC", "PLMS", "LCM"}
"""Samplers the stand-in Forge does not model (Forge runs them through other paths)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "a1111_only(why): the test reads AUTOMATIC1111's internals; on Forge it is skipped, saying why")


def _skip_on_forge(request):
    marker = request.node.get_closest_marker("a1111_only")
    if marker is not None:
        pytest.skip(f"AUTOMATIC1111 only: {marker.args[0]}")
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if any(isinstance(value, str) and value in KDIFFUSION_ONLY for value in params.values()):
        pytest.skip("the stand-in Forge models k-diffusion samplers only")


@pytest.fixture(params=HOSTS)
def webui(request, tmp_path):
    """The stand-in WebUI with SD1-shaped tiny checkpoints (tensor conditioning), as
    AUTOMATIC1111 1.10, Forge and Forge Neo: one suite over every host."""
    if request.param in FORGE_FAMILY:
        _skip_on_forge(request)
    yield from _standin(tmp_path, "sd1", request.param)


@pytest.fixture(params=HOSTS)
def sdxl_webui(request, tmp_path):
    """The stand-in WebUI with SDXL-shaped tiny checkpoints (dict conditioning, size vector)."""
    if request.param in FORGE_FAMILY:
        _skip_on_forge(request)
    yield from _standin(tmp_path, "sdxl", request.param)


@pytest.fixture
def a1111_webui(tmp_path):
    """The stand-in AUTOMATIC1111 1.10 alone (what only that host has)."""
    yield from _standin(tmp_path, "sd1")


@pytest.fixture(params=FORGE_FAMILY)
def forge_webui(request, tmp_path):
    """The stand-in Forge main and Forge Neo (what only the Forge family has)."""
    yield from _standin(tmp_path, "sd1", request.param)


V_PREDICTION = [
    ("a1111", "sd1", "yaml"),
    ("a1111", "sdxl", "yaml"),
    ("a1111", "sd2", "weights"),
    ("forge", "sd1", "yaml"),
    ("forge", "sdxl", "key"),
    ("neo", "sd1", "yaml"),
    ("neo", "sdxl", "key"),
]
"""v-prediction checkpoints as each host learns of them: a ``.yaml`` beside the file (both
families), SDXL v-pred's ``v_pred`` key (Forge; AUTOMATIC1111 1.10 reads no such key), an SD
2.x UNet's answer to AUTOMATIC1111's v test (Forge has a test of its own)."""


@pytest.fixture(params=V_PREDICTION, ids="-".join)
def v_webui(request, tmp_path):
    """The stand-in WebUI whose general, expert and artist checkpoints predict v (expert-eps:
    expert's weights read as eps)."""
    host, family, marked_by = request.param
    if host in FORGE_FAMILY:
        _skip_on_forge(request)
    yield from _standin(tmp_path, family, host, prediction="v", marked_by=marked_by)


FLOW = [("forge", "flux"), ("neo", "flux"), ("neo", "sd3")]
"""The rectified-flow families as the Forge family runs them: Flux dev's shape on Forge main and
Neo, SD3's (the discrete-flow predictor of Lumina 2, Z-Image, Qwen-Image) on Neo
(``standin.FLOW_FAMILIES``)."""


@pytest.fixture(params=FLOW, ids="-".join)
def flow_webui(request, tmp_path):
    """The stand-in Forge or Neo whose general, expert and artist checkpoints are tiny DiTs of a
    flow family (other-sdxl: another family)."""
    host, family = request.param
    _skip_on_forge(request)
    yield from _standin(tmp_path, family, host)
