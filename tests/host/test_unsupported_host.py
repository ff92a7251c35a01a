"""A WebUI whose model is not AUTOMATIC1111 1.10's (Forge's backend): told, never a traceback.

Judged by what the active model offers: Forge's backend model carries ``forge_objects`` and no
ldm ``model.diffusion_model``. Fusion off stays the WebUI's own generation bit for bit there
(checked on a real Forge too); fusion on fails with the extension's message; the models route
answers 501 with it.
"""

import pytest
import torch
from fastapi import HTTPException
from modules import processing, script_callbacks, shared

from lib_fusion.host.checkpoints import UNSUPPORTED_HOST


@pytest.fixture
def forge_like(webui, monkeypatch):
    monkeypatch.setattr(shared.sd_model, "forge_objects", object(), raising=False)
    return webui


def test_fusion_on_a_forge_backend_model_fails_with_the_message(forge_like):
    fusion = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1", "mode": 2}
    p = forge_like.processing(fusion, steps=2)
    with pytest.raises(ValueError, match="^Model Fusion: this WebUI runs its models through another backend"):
        processing.process_images(p)
    assert script_callbacks.registered_count() == 0 and "sample" not in vars(p)


def test_fusion_off_there_is_the_plain_generation(forge_like):
    plain = forge_like.latents(None, extension=False, steps=2)
    assert torch.equal(forge_like.latents({"enabled": False, "model": "expert"}, steps=2), plain)


def test_the_models_route_answers_501_with_the_message(forge_like):
    models = forge_like.app().routes[("GET", "/model-fusion/v1/models")]
    with pytest.raises(HTTPException) as answer:
        models()
    assert answer.value.status_code == 501 and answer.value.detail == UNSUPPORTED_HOST
