"""No fusion that does nothing wears the label, through whole generations: an img2img whose
strength starts below the window fuses no step and is refused with a fusion_selection that
would fuse; the same at a higher strength fuses; a hires pass that misses the window is fine
when the first pass fused. (The arithmetic of the advice: ``tests/unit/test_fused_step_rules.py``.)"""

import re

import pytest
import torch
from modules import processing

FUSION = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2, "prompt": "a cartoon lion"}
INIT = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))


def img2img(webui, fusion, strength):
    return webui.processing(fusion, img2img=True, init_latent=INIT, denoising_strength=strength, steps=20)


def test_img2img_below_the_window_is_refused_before_anything_loads_with_a_selection_that_fuses(webui):
    """The steps an img2img will take are known before sampling (the sampler's schedule cut at
    the strength): the refusal comes before any load or step, and its advice fuses."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    loads = CACHE.loads
    p = img2img(webui, FUSION, 0.3)
    refusal = r"^Model Fusion: no step of this img2img falls inside the fusion window.* (\d+) steps run at t = (\d+) down to"
    with pytest.raises(ValueError, match=refusal) as error:
        processing.process_images(p)
    assert CACHE.loads == loads and p.model_fusion_run.stats.timesteps == []
    count, highest = (int(number) for number in re.search(refusal, str(error.value)).groups())
    suggested = re.search(r'fusion_selection "([^"]+)" fuses (\d+) of these steps', str(error.value))
    assert suggested is not None and "raise the denoising strength" in str(error.value)
    p = img2img(webui, {**FUSION, "fusion_selection": suggested[1]}, 0.3)
    processing.process_images(p)
    seen = p.model_fusion_run.stats.timesteps
    assert len(seen) == count and round(max(seen)) == highest
    assert p.model_fusion_run.stats.fused_steps == int(suggested[2]) == round(0.4 * count)  # the first 40 %, as 600 meant


def test_img2img_at_a_strength_that_reaches_the_window_fuses(webui):
    p = img2img(webui, FUSION, 0.8)
    fused = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.fused_steps > 0
    plain = torch.stack(processing.process_images(img2img(webui, None, 0.8)).latents)
    assert not torch.equal(fused, plain)


def test_a_hires_pass_below_the_window_is_kept_when_the_first_pass_fused(webui):
    p = webui.processing(FUSION, enable_hr=True, hr_scale=1.5, steps=6, denoising_strength=0.3)
    processing.process_images(p)
    stats = p.model_fusion_run.stats
    hires = stats.timesteps[6:]  # after the first pass's 6 steps
    assert stats.fused_steps > 0 and hires and max(hires) <= 600


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM"])
@pytest.mark.parametrize("strength", [0.3, 0.8])
def test_the_img2img_tabs_schedule_label_counts_the_steps_the_strength_leaves(webui, sampler, strength):
    """The accordion's line in img2img reads the denoising strength: the timesteps it counts
    are the ones the generation then steps through (Forge's UNet sees the nearest whole
    timestep), and at a strength below the window it says that a generation would be refused."""
    from lib_fusion import host
    from lib_fusion.ui import schedule_words

    predicted = host.step_timesteps(sampler, "Automatic", 20, strength)
    p = img2img(webui, {**FUSION, "fusion_selection": "0,1,1"}, strength)  # every step fused: each one recorded
    p.sampler_name = sampler
    processing.process_images(p)
    seen = p.model_fusion_run.stats.timesteps
    assert len(predicted) == len(seen) and max(abs(a - b) for a, b in zip(predicted, seen)) <= 1.0
    line = schedule_words.describe(600, 2, predicted, sampler, strength)
    assert ("a generation would be refused" in line) == (max(seen) <= 600)


TWIN_METHODS = [
    {"mask": "hard"},
    {"mask": "soft"},
    {"mask": "mean"},
    {"method": "guidance", "guidance_weight": 2.5},
    {"method": "base_uncond"},
]
PROMPTS = ["a lion with a crown", "a lion :0.7 AND a crown :0.6", "a lion AND a crown AND gold :0.3"]


def twins(webui, *names):
    from modules import sd_models

    for name in names:
        (webui.models / f"{name}.safetensors").write_bytes((webui.models / "general.safetensors").read_bytes())
    sd_models.list_models()


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("method", TWIN_METHODS, ids=lambda method: "-".join(map(str, method.values())))
def test_a_byte_copy_of_the_active_checkpoint_with_the_same_prompts_gives_the_plain_image(webui, method, prompt):
    """Two identical models fused on every step give the plain image, bit for bit, on every
    host and with ``AND`` sub-prompts and their weights: SNB's saliencies tie everywhere (hard:
    A wins every tie; soft and mean: B's share of a zero difference), guidance pushes by a zero
    difference, base uncond's B's uncond is A's. The fusion redoes the host's CFG: AUTOMATIC1111
    sums the sub-prompts' differences, Forge averages them by weight first."""
    twins(webui, "twin")
    plain = webui.latents(None, extension=False, steps=4, batch_size=2, prompt=prompt)
    p = webui.processing({"enabled": True, "model": "twin", "fusion_selection": "0,1,1", **method}, steps=4, batch_size=2, prompt=prompt)
    fused = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.fused_steps == 4 and p.model_fusion_run.stats.fusion_runs == 4
    assert torch.equal(fused, plain)


@pytest.mark.parametrize("mask", ["hard", "soft", "mean"])
def test_three_byte_copies_of_the_active_checkpoint_give_the_plain_image(webui, mask, monkeypatch):
    """SNB over three models weighs each by a third (mean) or its share (soft): written as A
    plus each other model's weighted difference from A, copies add exact zeros."""
    from modules import shared

    monkeypatch.setattr(shared.opts, "model_fusion_max_models", 2, raising=False)
    twins(webui, "twin", "triplet")
    prompt = PROMPTS[1]
    plain = webui.latents(None, extension=False, steps=4, prompt=prompt)
    fusion = {"enabled": True, "model": "twin", "models": [{"model": "triplet"}], "fusion_selection": "0,1,1", "mask": mask}
    p = webui.processing(fusion, steps=4, prompt=prompt)
    fused = torch.stack(processing.process_images(p).latents)
    assert list(p.model_fusion_run.stats.more_runs.values()) == [4]
    assert torch.equal(fused, plain)


def test_on_forge_at_cfg_1_a_byte_copy_gives_the_plain_image(forge_webui):
    """Forge serves CFG 1 by the cond alone (no uncond run): the fused copy does the same,
    while its saliency is still measured against the uncond it runs itself."""
    twins(forge_webui, "twin")
    for prompt in PROMPTS:
        plain = forge_webui.latents(None, extension=False, steps=4, cfg_scale=1.0, prompt=prompt)
        fused = forge_webui.latents({"enabled": True, "model": "twin", "fusion_selection": "0,1,1"}, steps=4, cfg_scale=1.0, prompt=prompt)
        assert torch.equal(fused, plain)


@pytest.mark.parametrize(
    ("method", "scale", "refusal"),
    [
        ({"mask": "hard"}, 0.0, "SNB picks each pixel by the checkpoints' CFG responses, which are zero at CFG scale 0"),
        ({"mask": "soft"}, 0.0, "SNB picks each pixel by the checkpoints' CFG responses, which are zero at CFG scale 0"),
        ({"method": "base_uncond"}, 1.0, "base uncond replaces the negative branch of CFG, and at CFG scale 1 CFG has none"),
    ],
)
def test_a_cfg_scale_that_leaves_the_method_nothing_to_act_on_is_refused_before_anything_loads(webui, method, scale, refusal):
    from lib_fusion.engine.checkpoint_cache import CACHE

    loads = CACHE.loads
    p = webui.processing({**FUSION, **method}, steps=4, cfg_scale=scale)
    with pytest.raises(ValueError, match=f"^Model Fusion: {re.escape(refusal)}"):
        processing.process_images(p)
    assert CACHE.loads == loads and p.model_fusion_run.stats.timesteps == []


def test_the_cfg_scales_that_leave_a_method_something_to_act_on_fuse(webui):
    """SNB's mean mask at CFG 0 averages the two unconds; base uncond at CFG 1 on Forge with a
    hires pass at a CFG of its own fuses there."""
    plain = webui.latents(None, extension=False, steps=4, cfg_scale=0.0)
    p = webui.processing({**FUSION, "mask": "mean", "fusion_selection": "0,1,1"}, steps=4, cfg_scale=0.0)
    assert not torch.equal(torch.stack(processing.process_images(p).latents), plain)
    if webui.forge_family:
        p = webui.processing({**FUSION, "method": "base_uncond", "fusion_selection": "0,1,1"}, steps=4, cfg_scale=1.0,
                             enable_hr=True, hr_scale=1.5, hr_cfg=5.0, denoising_strength=0.6)  # fmt: skip
        processing.process_images(p)
        assert p.model_fusion_run.stats.fused_steps > 4
