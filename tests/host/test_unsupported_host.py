"""A WebUI the fusion cannot drive: told, never a traceback.

Judged by what the active model and its backend offer, never by a version tag: an
AUTOMATIC1111 1.10 ldm model (``model.diffusion_model``), or a Forge engine
(``forge_objects``) whose UNet patcher has the hooks the fusion uses. Anything else (another
backend; a Forge-family fork without those hooks, like reForge's ComfyUI-style one) fails
an enabled fusion with the extension's message, the models route answers 501 with it, and
fusion off stays the WebUI's own generation bit for bit.
"""

import pytest
import torch
from fastapi import HTTPException
from modules import processing, script_callbacks, shared

from lib_fusion.host.probe import UNSUPPORTED_HOST

FUSION = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1", "mode": 2}


@pytest.fixture
def other_backend(a1111_webui, monkeypatch):
    """A model with neither A1111's ldm UNet nor Forge's parts."""
    monkeypatch.setattr(shared.sd_model.model, "diffusion_model", None)
    monkeypatch.delattr(shared.sd_model.model, "diffusion_model")
    return a1111_webui


@pytest.fixture
def forge_without_hooks(forge_webui, monkeypatch):
    """A Forge-family engine whose UNet patcher lacks the conditioning modifier."""
    unet_class = type(shared.sd_model.forge_objects.unet)
    monkeypatch.delattr(unet_class, "add_conditioning_modifier")
    return forge_webui


def test_fusion_on_another_backend_fails_with_the_message(other_backend):
    p = other_backend.processing(FUSION, steps=2)
    with pytest.raises(ValueError, match="^Model Fusion: this WebUI runs its models through a backend the fusion does not know"):
        processing.process_images(p)
    assert script_callbacks.registered_count() == 0 and "sample" not in vars(p)


def test_a_forge_fork_without_the_hooks_names_what_is_missing(forge_without_hooks):
    p = forge_without_hooks.processing(FUSION, steps=2)
    with pytest.raises(ValueError, match=r"^Model Fusion: this Forge-family WebUI cannot fuse: .*add_conditioning_modifier\(\)"):
        processing.process_images(p)
    plain = forge_without_hooks.latents(None, extension=False, steps=2)
    assert torch.equal(forge_without_hooks.latents({"enabled": False, "model": "expert"}, steps=2), plain)


def test_the_models_route_answers_501_with_the_message(other_backend):
    models = other_backend.app().routes[("GET", "/model-fusion/v1/models")]
    with pytest.raises(HTTPException) as answer:
        models()
    assert answer.value.status_code == 501 and answer.value.detail == UNSUPPORTED_HOST
