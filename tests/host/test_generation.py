"""Whole generations through the stand-in WebUI, driving the real scripts/model_fusion.py."""

import re

import pytest
import torch
from modules import processing, script_callbacks, shared

SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "DDIM"]


def fusion(**overrides):
    args = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2}
    args.update(overrides)
    return args


def test_fused_differs_from_each_model_alone(webui):
    fused = webui.latents(fusion(), steps=6)
    active_alone = webui.latents(None, steps=6)
    fusion_alone = webui.latents(fusion(mode=0, solo="fusion"), steps=6)
    assert not torch.equal(fused, active_alone)
    assert not torch.equal(fused, fusion_alone)
    assert not torch.equal(active_alone, fusion_alone)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_extension_off_is_bit_identical_to_no_extension(webui, sampler):
    without = webui.latents(None, extension=False, sampler_name=sampler, batch_size=2)
    disabled = webui.latents(fusion(enabled=False), sampler_name=sampler, batch_size=2)
    default_ui = webui.latents(None, sampler_name=sampler, batch_size=2)
    assert torch.equal(without, disabled)
    assert torch.equal(without, default_ui)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("plain", [{"mode": 0}, {"method": "guidance", "guidance_weight": 1.0}], ids=["mode 0", "guidance w=1"])
def test_a_schedule_that_is_the_active_model_alone_is_the_hosts_own_generation(webui, sampler, plain):
    """Plain by definition: nothing loaded, no fusion label, the host's own image bit for bit."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    without = webui.latents(None, extension=False, sampler_name=sampler)
    loads = CACHE.loads
    p = webui.processing(fusion(**plain), sampler_name=sampler)
    processed = processing.process_images(p)
    assert torch.equal(without, torch.stack(processed.latents))
    assert not hasattr(p, "model_fusion_run") and CACHE.loads == loads
    assert "Fusion" not in processed.infotexts[0]


def test_solo_fusion_equals_fusion_checkpoint_loaded_as_active(webui):
    p = webui.processing(fusion(mode=0, solo="fusion"))
    fused_solo = torch.stack(processing.process_images(p).latents)
    stats = p.model_fusion_run.stats
    assert stats.active_runs == 0 and stats.fusion_runs == stats.solo_steps > 0
    webui.load("expert")
    expert_alone = webui.latents(None, extension=False)
    # Same UNet, same text encoder (the fusion model's own, as role A's), same noise.
    assert torch.allclose(fused_solo, expert_alone, atol=1e-5)


def test_hooks_are_gone_after_an_exception_inside_a_unet_call(webui, monkeypatch):
    calls = {"n": 0}
    unet = webui.unet()
    original = unet.forward

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom inside the UNet")
        return original(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", failing)
    p = webui.processing(fusion(), steps=6)
    with pytest.raises(RuntimeError, match="boom inside the UNet"):
        processing.process_images(p)
    monkeypatch.undo()
    assert script_callbacks.registered_count() == 0
    assert p.model_fusion_held.patched == []  # every wrapped inner model was restored
    assert torch.equal(webui.latents(None, extension=False), webui.latents(fusion(enabled=False)))


def test_progress_text_names_the_phase(webui, monkeypatch):
    seen = []
    monkeypatch.setattr(shared.state, "on_step", lambda step: seen.append(shared.state.textinfo), raising=False)
    webui.generate({"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2}, steps=4)
    assert seen[0].startswith("Model Fusion: SNB t=999") and seen[-1].startswith("Model Fusion: solo: active checkpoint t=")
    seen.clear()
    boxes = [{"box": [0, 0, 0.5, 1]}, {"box": [0.5, 0, 0.5, 1], "model": "active"}]
    webui.generate({"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "window": 8, "stride": 4}, steps=2)
    assert seen == ["Model Fusion: regions: 2 regions + background, 1 window"] * 2
    seen.clear()
    webui.generate(
        {"enabled": True, "model": "expert", "method": "regions", "regions": boxes[:1], "window": 8, "stride": 4}, steps=1, width=128
    )
    assert seen == ["Model Fusion: regions: 1 region + background, 3 windows"]


@pytest.mark.parametrize("sampler", SAMPLERS + ["UniPC", "LCM"])
@pytest.mark.parametrize(("v1", "mode"), [(0, 1), (1000, 2)])
def test_the_empty_ends_of_the_window_never_fuse_on_any_sampler(webui, sampler, v1, mode):
    """Euler's last step has t = 0: 'mode 1, v1 = 0' must not fuse it (the official DDIM never
    reaches t = 0); 'mode 2, v1 = 1000' must fuse nothing either. A generation that would fuse
    no step is the active model alone: refused before anything loads when the sampler's steps
    can be foreseen (else after its first batch), naming the steps' range and a v1 that fuses."""
    from lib_fusion.engine.checkpoint_cache import CACHE
    from lib_fusion.engine.fused_steps import never_fused

    loads = CACHE.loads
    p = webui.processing(fusion(fusion_selection=f"{v1},1,1", mode=mode), sampler_name=sampler, steps=5)
    with pytest.raises(ValueError, match="^Model Fusion: no step (of this txt2img falls|fell) inside the fusion window") as error:
        processing.process_images(p)
    run = p.model_fusion_run
    if "of this txt2img" in str(error.value):  # foreseen: nothing loaded, nothing sampled
        assert CACHE.loads == loads and run.stats.timesteps == []
    else:
        assert run.stats.fused_steps == 0 and str(error.value) == never_fused(run.args, run.stats)
    suggested = re.search(r'fusion_selection "([^"]+)" fuses (\d+) of these steps', str(error.value))
    p = webui.processing(fusion(fusion_selection=suggested[1], mode=mode), sampler_name=sampler, steps=5)
    processing.process_images(p)
    assert p.model_fusion_run.stats.fused_steps == int(suggested[2]) > 0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_mode_two_from_zero_fuses_every_step_on_any_sampler(webui, sampler):
    p = webui.processing(fusion(fusion_selection="0,1,1", mode=2), sampler_name=sampler, steps=5)
    processing.process_images(p)
    stats = p.model_fusion_run.stats
    assert stats.solo_steps == 0 and stats.fused_steps == len(stats.timesteps) > 0
    assert sampler == "DDIM" or min(stats.timesteps) == 0.0  # k-diffusion reaches t = 0 and fuses it


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_accordions_schedule_label_knows_the_samplers_steps(webui, sampler):
    """The label counts fused steps from the schedule the tab's sampler will step through: the
    timesteps it foresees are the ones a generation then steps through (DDIM calls the model at
    all but its schedule's lowest timestep)."""
    from lib_fusion import host

    timesteps = host.step_timesteps(sampler, "Automatic", 12)
    assert timesteps is not None and all(999.5 >= a > b >= 0 for a, b in zip(timesteps, timesteps[1:]))
    p = webui.processing(fusion(fusion_selection="0,1,1", mode=2), sampler_name=sampler, steps=12)
    processing.process_images(p)
    seen = p.model_fusion_run.stats.timesteps
    assert len(seen) == len(timesteps) and max(abs(a - b) for a, b in zip(timesteps, seen)) <= 1.0
