"""Opt-in: a flow-matching family through a running Forge Neo's (or Forge's) API.

    MODEL_FUSION_WEBUI_URL=http://127.0.0.1:7862 \
    MODEL_FUSION_FLOW_CHECKPOINTS=<active>,<byte copy of active>,<another of the family> \
    MODEL_FUSION_FLOW_MODULES=<text encoder path>,<VAE path> pytest tests/webui/test_real_flow.py

The test makes the first checkpoint active with the modules beside it (Forge's
``forge_additional_modules``) and puts the WebUI's checkpoint and modules back afterwards. A
byte copy with the same prompts gives the plain image for every method; the other checkpoint
fuses by every method; SNB at CFG scale 1 and a window off the DiT's patch are refused with the
extension's words (``docs/flow.md``). 64x64 and 4 steps: minutes on a CPU.
"""

import os

import pytest
import requests

from tests.webui.test_real_webui import URL, generate, pixels

FLOW = [name for name in os.environ.get("MODEL_FUSION_FLOW_CHECKPOINTS", "").split(",") if name]
MODULES = [path for path in os.environ.get("MODEL_FUSION_FLOW_MODULES", "").split(",") if path]
pytestmark = pytest.mark.skipif(
    not (URL and len(FLOW) == 3), reason="set MODEL_FUSION_WEBUI_URL and MODEL_FUSION_FLOW_CHECKPOINTS (active, byte copy, another)"
)
CFG = {"cfg_scale": 4.0}
METHODS = [
    {"mask": "hard"},
    {"mask": "soft", "fusion_selection": "600,1,1", "mode": 2},
    {"method": "guidance", "guidance_weight": 2.5},
    {"method": "base_uncond"},
    {"method": "regions", "regions": [{"box": [0, 0, 0.5, 1], "model": "{model}"}], "bootstrapping": 0},
]


def title(name: str) -> str:
    models = requests.get(f"{URL}/sdapi/v1/sd-models", timeout=60).json()
    return next(model["title"] for model in models if name in (model["model_name"], model["title"]))


@pytest.fixture(scope="module", autouse=True)
def flow_active():
    """The first checkpoint active with its modules; the WebUI's own put back after."""
    before = requests.get(f"{URL}/sdapi/v1/options", timeout=60).json()
    requests.post(f"{URL}/sdapi/v1/refresh-checkpoints", timeout=120)
    options = {"sd_model_checkpoint": title(FLOW[0]), "forge_additional_modules": MODULES}
    requests.post(f"{URL}/sdapi/v1/options", json=options, timeout=600).raise_for_status()
    yield
    restore = {key: before.get(key) for key in options if key in before}
    requests.post(f"{URL}/sdapi/v1/options", json=restore, timeout=600).raise_for_status()


@pytest.fixture(scope="module")
def plain():
    return pixels(generate(**CFG))[0]


def with_model(method: dict, model: str) -> dict:
    regions = [{**region, "model": model} for region in method.get("regions", [])]
    return {**method, **({"regions": regions} if regions else {})}


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.get("method", method.get("mask")))
def test_a_byte_copy_with_the_same_prompts_gives_the_plain_image(plain, method):
    fusion = {"enabled": True, "model": title(FLOW[1]), "fusion_selection": "0,1,1", **with_model(method, title(FLOW[1]))}
    assert (pixels(generate(fusion, **CFG))[0] == plain).all()


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.get("method", method.get("mask")))
def test_another_checkpoint_of_the_family_fuses(plain, method):
    other = title(FLOW[2])
    fusion = {"enabled": True, "model": other, "prompt": "a cartoon lion", "fusion_selection": "0,1,1", **with_model(method, other)}
    response = generate(fusion, **CFG)
    assert abs(pixels(response)[0] - plain).max() > 0
    assert "Fusion" in response.json()["info"]


def test_snb_at_cfg_scale_1_is_refused_and_regions_fuse():
    snb = {"enabled": True, "model": title(FLOW[2]), "prompt": "a cartoon lion", "fusion_selection": "0,1,1"}
    response = generate(snb, cfg_scale=1.0)
    assert response.status_code != 200 and "runs no unconditional branch" in response.text
    regions = {"enabled": True, "method": "regions", "model": title(FLOW[2]), "regions": [{"box": [0, 0, 0.5, 1]}]}
    assert abs(pixels(generate(regions, cfg_scale=1.0))[0] - pixels(generate(cfg_scale=1.0))[0]).max() > 0


def test_a_window_off_the_patch_grid_is_refused():
    regions = {"enabled": True, "method": "regions", "model": title(FLOW[2]), "regions": [{"box": [0, 0, 0.5, 1]}], "window": 9}
    response = generate(regions, **CFG)
    assert response.status_code != 200 and "is not a multiple of the active model's patch size 2" in response.text
