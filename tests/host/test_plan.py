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
