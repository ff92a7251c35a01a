"""One resolved plan per generation: the host settles the arguments, the checkpoints and the
masks before the first step, the run reads the plan and never rewrites it, and what the host
holds for the generation (loaded models, hooks) lives apart from the engine's run."""

import dataclasses

import pytest
from modules import processing, shared

from lib_fusion.engine.plan import Plan


def test_the_plan_holds_the_resolved_generation_and_nothing_rewrites_it(webui):
    shared.opts.model_fusion_max_models = 2
    fusion = {"enabled": True, "model": "expert", "models": [{"model": "artist"}], "fusion_selection": "0,1,1"}
    p = webui.processing(fusion, steps=3)
    processing.process_images(p)
    run = p.model_fusion_run
    assert isinstance(run.plan, Plan) and run.args is run.plan.args
    assert run.plan.fusion.title == webui.title("expert") and [info.title for info in run.plan.more] == [webui.title("artist")]
    assert run.args.models[0].model == webui.title("artist")  # completed in the plan: the title the WebUI lists
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.plan.args = run.plan.args
    with pytest.raises(AttributeError):
        run.args = run.plan.args
    with pytest.raises(TypeError):
        run.args.mode = 1  # the arguments are immutable too
    assert not {"model_info", "fusion_model", "more_models", "region_models", "patched", "callback"} & set(vars(run))


def test_a_regions_plan_holds_each_checkpoint_and_the_decoded_masks(webui):
    shared.opts.model_fusion_max_models = 2
    regions = [{"box": [0, 0, 0.5, 1], "prompt": "a castle", "model": "artist"}, {"box": [0.5, 0, 0.5, 1], "model": "fusion"}]
    p = webui.processing({"enabled": True, "method": "regions", "model": "expert", "regions": regions}, steps=3, width=128)
    processing.process_images(p)
    plan = p.model_fusion_run.plan
    assert plan.fusion.title == webui.title("expert") and list(plan.regions) == [webui.title("artist")]
    assert plan.region_images == (None, None)  # boxes: nothing to decode
    assert [region.model for region in plan.args.regions] == [webui.title("artist"), "fusion"]
    assert p.model_fusion_held.regions == {} and p.model_fusion_held.fusion is None  # let go at the generation's end


@pytest.mark.parametrize(
    ("sampler", "img2img", "hires"),
    [("Euler", False, False), ("DDIM", False, False), ("Euler", False, True), ("Euler", True, False), ("DDIM", True, False)],
)
def test_the_plan_foresees_the_timestep_of_every_step_each_pass_takes(webui, sampler, img2img, hires):
    """Each pass's steps, planned from the sampler's own schedule before anything loads, are
    the steps the run then meets: their timesteps as the run maps each sigma (on Forge the
    nearest whole one, which its UNet sees), and the CFG scale each pass samples at (Forge's
    hires pass: its own)."""
    import torch

    fusion = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}
    kwargs = {"steps": 6, "sampler_name": sampler}
    if img2img:
        kwargs.update(init_latent=torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), denoising_strength=0.5)
    if hires:
        kwargs.update(enable_hr=True, hr_scale=2, denoising_strength=0.5)
    p = webui.processing(fusion, img2img=img2img, **kwargs)
    processing.process_images(p)
    run = p.model_fusion_run
    names = [planned.name for planned in run.plan.passes]
    assert names == (["img2img"] if img2img else ["txt2img", "hires pass"] if hires else ["txt2img"])
    hires_cfg = getattr(p, "hr_cfg", p.cfg_scale)
    assert [planned.cfg_scale for planned in run.plan.passes] == [p.cfg_scale] + [hires_cfg] * hires
    planned = [t for planned in run.plan.passes for t in planned.timesteps]
    assert planned == pytest.approx(run.stats.timesteps, abs=0.5 if webui.forge_family else 1e-3)
