"""What only Forge's contract has (``docs/hosts.md``); the rest of the host
suite runs on the stand-in Forge and Neo too (the ``webui`` fixture's ``forge`` and ``neo`` thirds).

Forge's sampling function calls our conditioning modifier and post-CFG function on a clone
of ``forge_objects.unet``; the fusion checkpoint is Forge's own engine, placed by its memory
manager; a hires pass prepares its hooks twice and samples once.
"""

import copy
import gc
import weakref

import pytest
import torch
from backend import memory_management
from modules import processing, scripts, shared

from lib_fusion.engine.checkpoint_cache import CACHE


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2, **overrides}


class OtherExtension(scripts.Script):
    """Another Forge extension patching after ours, as built-ins do: clone, patch, set."""

    args_from = args_to = 0

    def __init__(self, action):
        self.action = action

    def process_before_every_sampling(self, p, *args, **kwargs):
        self.action(p)


def with_other(webui, action, fusion, **kwargs):
    p = webui.processing(fusion, **kwargs)
    p.scripts = scripts.ScriptRunner([webui.script, OtherExtension(action)])
    return p


def test_the_hooks_sit_on_a_clone_and_the_models_own_patcher_is_back_after(forge_webui):
    model = shared.sd_model
    own = model.forge_objects_after_applying_lora.unet
    seen = []

    def look(p):
        unet = p.sd_model.forge_objects.unet
        modifiers = unet.model_options.get("conditioning_modifiers", [])
        seen.append((unet is own, len(modifiers), list(unet.extra_model_patchers_during_sampling)))

    processing.process_images(with_other(forge_webui, look, snb(), steps=4))
    [(is_own, modifiers, extras)] = seen
    assert not is_own and modifiers == 1 and extras == [CACHE.value.unet]  # the fusion UNet goes to the memory manager
    assert model.forge_objects.unet is own and "conditioning_modifiers" not in own.model_options
    assert own.extra_model_patchers_during_sampling == []


def test_another_extension_cloning_after_ours_keeps_the_fusion_and_copies_no_run(forge_webui):
    """Forge deep-copies ``model_options`` on every clone: our hooks are plain functions, copied
    by reference, so a later clone still fuses and carries no copy of the run."""
    copies = []

    def clone_again(p):
        unet = p.sd_model.forge_objects.unet
        copies.append(copy.deepcopy(unet.model_options)["conditioning_modifiers"][0] is unet.model_options["conditioning_modifiers"][0])
        p.sd_model.forge_objects.unet = unet.clone()

    alone = forge_webui.latents(snb(), steps=5, batch_size=2)
    p = with_other(forge_webui, clone_again, snb(), steps=5, batch_size=2)
    assert torch.equal(torch.stack(processing.process_images(p).latents), alone)
    assert copies == [True] and p.model_fusion_run.stats.fused_steps > 0


def test_an_extension_that_drops_our_hooks_gives_an_error_not_an_unfused_image(forge_webui):
    def fresh_patcher(p):
        p.sd_model.forge_objects.unet = p.sd_model.forge_objects_original.unet.clone()

    with pytest.raises(RuntimeError, match="the sampler never called the fusion hook"):
        processing.process_images(with_other(forge_webui, fresh_patcher, snb(), steps=4))


def test_a_hires_pass_prepared_twice_is_one_fused_pass(forge_webui):
    passes = []

    def count(p):
        passes.append([(sampling_pass.hires, sampling_pass.steps_seen) for sampling_pass in p.model_fusion_run.passes])

    p = with_other(forge_webui, count, snb(), enable_hr=True, hr_scale=1.5, steps=6, denoising_strength=0.7)
    processing.process_images(p)
    assert passes == [[(False, 0)], [(False, 6), (True, 0)], [(False, 6), (True, 0)]]  # the second preparation replaced the first
    stats = p.model_fusion_run.stats
    assert len(stats.kinds) == 6 + 5 and stats.fused_steps > 0  # the hires pass: int(0.7 * 6) + 1 sigmas to step through


def test_the_memory_manager_places_the_fusion_unet_and_lets_go_on_unload(forge_webui):
    memory_management.loads.clear()
    forge_webui.generate(snb(), steps=3)
    fusion = CACHE.value.unet
    placed = [[ref() for ref in call] for call in memory_management.loads]
    assert any(fusion in call for call in placed)
    held = weakref.ref(fusion)
    del fusion, placed
    unload = forge_webui.app().routes[("POST", "/model-fusion/v1/unload")]
    assert unload() == {"unloaded": True}
    gc.collect()
    assert held() is None
    assert all(loaded.model is not held() for loaded in memory_management.current_loaded_models)


def test_solo_steps_of_the_active_model_are_forges_own_call(forge_webui):
    """A step the schedule gives to the active model alone is left to Forge: its
    conditioning modifier returns the conds untouched and the UNet runs once, as without us."""
    kmodel = shared.sd_model.forge_objects.unet.model
    kmodel.calls.clear()
    plain = forge_webui.latents(None, extension=False, steps=4, batch_size=2)
    plain_calls = list(kmodel.calls)
    kmodel.calls.clear()
    solo = forge_webui.latents(snb(mode=0), steps=4, batch_size=2)
    assert torch.equal(solo, plain) and kmodel.calls == plain_calls


def test_fused_steps_run_no_unet_pass_of_forges_own(forge_webui):
    """On a fused step the run calls each model once on its cond and uncond rows; Forge's
    own call gets no cond to run (no wasted pass of the active UNet)."""
    kmodel = shared.sd_model.forge_objects.unet.model
    kmodel.calls.clear()
    p = forge_webui.processing(snb(fusion_selection="0,1,1"), steps=4, batch_size=2)
    processing.process_images(p)
    assert p.model_fusion_run.stats.fused_steps == 4
    assert kmodel.calls == [4] * 4  # 2 images x (cond + uncond), once per step
    assert CACHE.value.unet.model.calls == [4] * 4


def test_cfg_one_still_measures_saliency_against_the_uncond(forge_webui):
    """Forge encodes no negative prompt at CFG 1 (nor in a hires pass at its API's default
    hires CFG 1): the fused steps encode it themselves and run the uncond rows, apart from the
    positive, which Forge runs alone there."""
    plain = forge_webui.latents(None, extension=False, steps=4, cfg_scale=1.0)
    p = forge_webui.processing(snb(fusion_selection="0,1,1"), steps=4, cfg_scale=1.0)
    fused = torch.stack(processing.process_images(p).latents)
    assert not torch.equal(fused, plain) and torch.isfinite(fused).all()
    assert shared.sd_model.forge_objects.unet.model.calls[-2:] == [1, 1]  # cond, then uncond, of the one image


class Placeholder:
    """What Forge holds as ``shared.sd_model`` until its first generation loads the model."""

    cond_stage_model = None
    chunk_length = 75


def test_before_forge_loads_its_model_the_routes_and_the_ui_wait_for_it(forge_webui, monkeypatch):
    from lib_fusion import host

    monkeypatch.setattr(shared, "sd_model", Placeholder())
    assert host.unsupported_host() is None
    answer = forge_webui.app().routes[("GET", "/model-fusion/v1/models")]()
    assert {entry["usable"] for entry in answer["checkpoints"]} == {None}
    assert "first generation" in answer["checkpoints"][0]["reason"]
    offered, left_out = host.fusable_titles()
    assert offered == host.checkpoint_titles() and left_out == []


@pytest.mark.parametrize("text_encoder", ["solo", "own"])
def test_the_fusion_engine_lets_go_of_the_parts_it_never_runs(forge_webui, text_encoder):
    """Forge's loader builds a checkpoint whole; the fusion frees its VAE at once and its text
    encoder unless a prompt is encoded by it (a flow family's T5 is most of the checkpoint)."""
    from backend import loader

    fusion = {"enabled": True, "model": "expert", "prompt": "a cartoon lion", "text_encoder": text_encoder, "fusion_selection": "0,1,1"}
    forge_webui.generate(fusion, steps=2)
    engine = loader.built[-1]()
    assert engine is not shared.sd_model and CACHE.value.unet is engine.forge_objects.unet
    assert engine.forge_objects.vae.first_stage_model.weight.is_meta
    encoder_weights = list(engine.forge_objects.clip.cond_stage_model.parameters())
    assert all(weight.is_meta for weight in encoder_weights) == (text_encoder == "solo")
    assert (CACHE.value.text_encoder is None) == (text_encoder == "solo")
