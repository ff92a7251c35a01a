"""Opt-in: the robustness checks against a running WebUI started with ``--api``.

    MODEL_FUSION_WEBUI_URL=http://127.0.0.1:7860 MODEL_FUSION_CHECKPOINT=<fusion ckpt> pytest tests/webui

The active checkpoint must be an SD1 checkpoint other than MODEL_FUSION_CHECKPOINT, of the
same family. Skipped when the variables are not set.
"""

import base64
import io
import itertools
import json
import os

import pytest
import requests

from tests.bad_input_cases import CASES

URL = os.environ.get("MODEL_FUSION_WEBUI_URL")
CHECKPOINT = os.environ.get("MODEL_FUSION_CHECKPOINT")
pytestmark = pytest.mark.skipif(not (URL and CHECKPOINT), reason="set MODEL_FUSION_WEBUI_URL and MODEL_FUSION_CHECKPOINT")

BASE = {"prompt": "a lion with a crown", "negative_prompt": "", "steps": 6, "width": 64, "height": 64, "seed": 7, "sampler_name": "Euler"}
SAMPLERS = [("Euler a", "Automatic"), ("DPM++ 2M", "Karras"), ("DDIM", "Automatic"), ("UniPC", "Automatic"), ("LCM", "Automatic")]
PROMPT = "a lion [in a forest:on a beach:0.5] AND a golden crown:0.6"


def snb(**overrides):
    return {"enabled": True, "model": CHECKPOINT, "fusion_selection": "500,1,1", "mode": 2, "prompt": "a cartoon lion", **overrides}


def regions(**overrides):
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion"}, {"box": [0.25, 0.5, 0.75, 0.5], "model": "active"}]
    return {"enabled": True, "model": CHECKPOINT, "method": "regions", "regions": boxes, "window": 8, "stride": 4, **overrides}


def generate(fusion=None, route="txt2img", **fields):
    payload = {**BASE, **fields}
    if fusion is not None:
        payload["alwayson_scripts"] = {"model fusion": {"args": [fusion]}}
    return requests.post(f"{URL}/sdapi/v1/{route}", json=payload, timeout=600)


def pixels(response):
    import numpy
    from PIL import Image

    assert response.status_code == 200, response.text
    return [numpy.asarray(Image.open(io.BytesIO(base64.b64decode(image))), dtype=numpy.int16) for image in response.json()["images"]]


def test_fused_image_differs_and_infotext_names_the_fusion():
    plain = generate()
    fused = generate(snb())
    assert pixels(plain)[0].tolist() != pixels(fused)[0].tolist()
    assert "Fusion model:" in fused.json()["info"]


def test_disabled_is_identical_to_plain():
    assert generate().json()["images"] == generate(snb(enabled=False)).json()["images"]


@pytest.mark.parametrize(
    "sampler, kind, method",
    list(itertools.product(SAMPLERS, ["txt2img", "hires", "img2img"], ["snb", "regions"])),
    ids=lambda v: str(v[0] if isinstance(v, tuple) else v),
)
def test_image_i_of_a_fused_batch_equals_its_seed_alone(sampler, kind, method):
    fusion = snb() if method == "snb" else regions()
    fields = {"sampler_name": sampler[0], "scheduler": sampler[1], "prompt": PROMPT, "seed": 30}
    route = "txt2img"
    if kind == "hires":
        fields.update(enable_hr=True, hr_scale=1.5, hr_upscaler=hires_upscaler(), denoising_strength=0.6, **forge_hires())
    if kind == "img2img":
        init = generate(**{**fields, "seed": 1}).json()["images"][0]
        fields.update(init_images=[init], denoising_strength=0.8)
        route = "img2img"
    host_batch, host_alone = pixels(generate(None, route, batch_size=2, **fields))[0], pixels(generate(None, route, **fields))[0]
    if abs(host_batch - host_alone).max() > 2:  # seen: UniPC img2img
        pytest.skip(f"the WebUI itself is not batch-invariant for {sampler[0]} {kind}; nothing to compare with")
    batch = pixels(generate(fusion, route, batch_size=2, n_iter=2, **fields))
    for i, image in enumerate(batch[:4]):
        alone = pixels(generate(fusion, route, **{**fields, "seed": 30 + i}))[0]
        # The WebUI's batched convolutions round differently at batch 2 than at 1: a pixel may
        # move by 2/255. Where SNB's two softmax values tie to within that rounding, the hard
        # mask can pick the other model for one latent pixel, which changes its 8x8 block of
        # the image and no other: at most 1 % of the blocks may differ by more.
        assert flipped_blocks(image, alone) <= 0.01, f"image {i} depends on the batch around it"


def hires_upscaler() -> str:
    """The WebUI's first latent upscaler ("Latent" on AUTOMATIC1111 and Forge); Forge Neo has
    none, and its image upscaler "None" resizes."""
    modes = requests.get(f"{URL}/sdapi/v1/latent-upscale-modes", timeout=60).json()
    return modes[0]["name"] if modes else "None"


def forge_hires() -> dict:
    """Forge's API runs a hires pass only when told which extra modules it keeps."""
    options = requests.get(f"{URL}/sdapi/v1/options", timeout=60).json()
    return {"hr_additional_modules": ["Use same choices"]} if "forge_additional_modules" in options else {}


def flipped_blocks(a, b) -> float:
    """Share of the 8x8 pixel blocks (one latent pixel each) where ``a`` and ``b`` differ by more than 2/255."""
    import numpy as np

    difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    h, w = difference.shape[0] // 8, difference.shape[1] // 8
    blocks = difference[: h * 8, : w * 8].reshape(h, 8, w, 8, -1).max(axis=(1, 3, 4))
    return float((blocks > 2).mean())


def error_message(response) -> str:
    """The error's text: AUTOMATIC1111 answers it as ``errors``, Forge as ``message``."""
    body = response.json()
    return body.get("errors") or body.get("message") or ""


STANDIN_CHECKPOINTS = {"general", "wide", "other-sdxl", "other-sd1", "artist"}
"""Rows naming the stand-in's own checkpoints need its folder; the rest run anywhere."""


def _sendable(fusion) -> bool:
    """Rows a JSON client can send at all (100,000 levels of nesting or a 5,000-digit integer
    fail in ``json.dumps`` already: the stand-in tests take those)."""
    try:
        json.dumps(fusion)
    except (ValueError, RecursionError):
        return False
    return True


def _checkpoints(fusion: dict) -> set:
    """The checkpoints a row names, its regions', further models' and background's included."""
    items = [item for key in ("regions", "models") if isinstance(fusion.get(key), list) for item in fusion[key]]
    return {fusion.get("model"), fusion.get("background"), *(item.get("model") for item in items if isinstance(item, dict))}


ROWS = [
    case
    for case in CASES
    if case[3] is None and isinstance(case[1], dict) and not _checkpoints(case[1]) & STANDIN_CHECKPOINTS and _sendable(case[1])
]


@pytest.mark.parametrize("name, fusion, fields, setup, fragments", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_an_error_response_naming_it(name, fusion, fields, setup, fragments):
    fusion = {**fusion, "model": CHECKPOINT} if fusion.get("model") == "expert" else fusion
    size = {key: fields[key] for key in ("width", "height") if key in fields and fields[key] % 8}
    if size and _size_used(size) != size:
        pytest.skip(f"this WebUI makes {size} another size itself (Forge Neo rounds to 64): no such image reaches the fusion")
    response = generate(fusion, **fields)
    assert response.status_code >= 400
    message = error_message(response)
    assert message.startswith("Model Fusion: ")
    for fragment in fragments:
        assert fragment in message


def _size_used(size: dict) -> dict:
    """The size a plain one-step generation of ``size`` comes out at."""
    info = json.loads(generate(steps=1, **size).json()["info"])
    return {key: info[key] for key in size}


def test_after_a_failed_generation_the_next_plain_one_is_identical():
    before = generate().json()["images"]
    assert generate(snb(fusion_selection="600,1")).status_code >= 400
    assert generate(regions(regions=[{"box": [0, 0, 0.01, 0.01]}])).status_code >= 400
    assert generate().json()["images"] == before


def test_unload_route():
    generate(snb())
    assert requests.post(f"{URL}/model-fusion/v1/unload", timeout=60).json() == {"unloaded": True}
    assert requests.post(f"{URL}/model-fusion/v1/unload", timeout=60).json() == {"unloaded": False}
