"""SDXL-shaped checkpoints: dict conditioning (``crossattn`` + ``vector``) through SNB and Regions."""

import pytest
import torch
from modules import processing

PROMPT = "a lion AND a golden crown:0.5"


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2, **overrides}


def regions(**overrides):
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion"}]
    return {"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "window": 8, "stride": 4, **overrides}


def test_extension_off_and_solo_schedules_are_bit_identical(sdxl_webui):
    plain = sdxl_webui.latents(None, extension=False, batch_size=2, prompt=PROMPT)
    assert torch.equal(plain, sdxl_webui.latents(snb(enabled=False), batch_size=2, prompt=PROMPT))
    assert torch.equal(plain, sdxl_webui.latents(snb(mode=0), batch_size=2, prompt=PROMPT))


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "DDIM"])
def test_snb_fuses_with_the_vector_and_keeps_batches_invariant(sdxl_webui, sampler):
    seen = []
    p = sdxl_webui.processing(snb(prompt="a cartoon lion"), batch_size=2, prompt=PROMPT, sampler_name=sampler, steps=6, seed=5)
    fused = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.fused_steps > 0
    assert not torch.equal(fused, sdxl_webui.latents(None, extension=False, batch_size=2, prompt=PROMPT, sampler_name=sampler, steps=6))

    unet = sdxl_webui.fusion_unet()  # the fusion UNet gets SDXL's y (pooled text + size) on every call
    original = unet.forward
    unet.forward = lambda x, t, context=None, y=None: seen.append(None if y is None else tuple(y.shape)) or original(x, t, context, y)
    for i in range(2):
        alone = sdxl_webui.latents(snb(prompt="a cartoon lion"), prompt=PROMPT, sampler_name=sampler, steps=6, seed=5 + i)
        assert torch.equal(fused[i], alone[0])
    del unet.forward
    assert seen and all(shape is not None and shape[1] == sdxl_webui.unet().label_emb.in_features for shape in seen)


def test_regions_on_sdxl(sdxl_webui):
    p = sdxl_webui.processing(regions(), batch_size=2, prompt=PROMPT, steps=4)
    out = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.region_passes > 0 and torch.isfinite(out).all()
    assert p.model_fusion_run.stats.latent_sizes == [(8, 8)]


def test_the_native_window_of_sdxl_is_128_latent_pixels(sdxl_webui):
    """Window 0 means the model's own size: 128 latent pixels, so a 1024-wide canvas is one view."""
    p = sdxl_webui.processing(regions(window=0, stride=8), width=1024, height=64, steps=1)
    processing.process_images(p)
    stats = p.model_fusion_run.stats
    assert stats.region_calls == 2  # one view: the background (active) and the region (fusion)


def test_an_sd1_checkpoint_is_refused_with_the_family_named(sdxl_webui):
    with pytest.raises(ValueError) as error:
        sdxl_webui.generate(snb(model="other-sd1"))
    assert "is not of the active checkpoint's family" in str(error.value)


def test_the_fusion_checkpoints_own_sdxl_text_encoders(sdxl_webui):
    """Its prompts read by its own conditioner (both CLIP encoders, size vector): model B
    alone all the way with its own encoders is the fusion checkpoint loaded as the active
    one, and fusing with them differs from fusing with A's."""
    kwargs = {"steps": 4, "prompt": PROMPT, "sampler_name": "DPM++ 2M"}
    own_alone = sdxl_webui.latents(snb(mode=0, solo="fusion"), **kwargs)
    read_by_a = sdxl_webui.latents(snb(fusion_selection="0,1,1", prompt="a cartoon lion"), **kwargs)
    read_by_b = sdxl_webui.latents(snb(fusion_selection="0,1,1", prompt="a cartoon lion", text_encoder="own"), **kwargs)
    assert not torch.equal(read_by_a, read_by_b)
    sdxl_webui.load("expert")
    expert = sdxl_webui.latents(None, extension=False, **kwargs)
    assert torch.allclose(own_alone, expert, atol=1e-5)
