"""Fusion under the WebUI's conditions: batch layouts, passes, samplers, errors."""

import pytest
import torch
from modules import errors, processing, shared
from standin import weights_hash

from lib_fusion.engine.checkpoint_cache import CACHE


def fusion(**overrides):
    args = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2}
    args.update(overrides)
    return args


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DDIM"])
def test_every_sampler_fuses_and_counts_only_needed_passes(webui, sampler):
    p = webui.processing(fusion(), sampler_name=sampler, steps=8)
    processing.process_images(p)
    stats = p.model_fusion_run.stats
    assert stats.fused_steps > 0 and stats.solo_steps > 0
    assert stats.fusion_runs == stats.fused_steps  # B runs on fused steps only
    assert stats.active_runs == stats.fused_steps + stats.solo_steps
    fused_ts = [t for t, k in zip(stats.timesteps, stats.kinds) if k == "fused"]
    assert all(t > 600 for t in fused_ts)


@pytest.mark.a1111_only("DDIM's timestep samplers")
def test_ddim_timesteps_follow_the_official_test(webui):
    p = webui.processing(fusion(fusion_selection="500,1,1", mode=1), sampler_name="DDIM", steps=10)
    processing.process_images(p)
    stats = p.model_fusion_run.stats
    assert stats.timesteps == [901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0]
    assert stats.kinds == ["solo"] * 5 + ["fused"] * 4


@pytest.mark.parametrize("batch_cond_uncond", [True, False])
def test_batch_invariance_and_chunked_calls(webui, batch_cond_uncond):
    shared.opts.batch_cond_uncond = batch_cond_uncond
    batch = webui.latents(fusion(), batch_size=3, seed=10)
    for i in range(3):
        alone = webui.latents(fusion(), batch_size=1, seed=10 + i)
        assert torch.equal(batch[i], alone[0])  # the stand-in UNet is row-wise: exact by construction


def test_batch_cond_uncond_does_not_change_the_result(webui):
    on = webui.latents(fusion(), batch_size=2)
    shared.opts.batch_cond_uncond = False
    off = webui.latents(fusion(), batch_size=2)
    assert torch.equal(on, off)


def test_and_subprompts_and_long_prompts_and_prompt_editing(webui):
    long_prompt = " ".join(["word"] * 90) + " AND a crown:0.5"
    fused = webui.latents(fusion(), prompt=long_prompt, batch_size=2, steps=6)
    edited = webui.latents(fusion(prompt="[a lion:a cartoon lion:0.5]"), batch_size=2, steps=6)
    plain = webui.latents(None, prompt=long_prompt, batch_size=2, steps=6)
    assert fused.shape == plain.shape and not torch.equal(fused, plain)
    assert torch.isfinite(edited).all()
    # The edit switches the fusion prompt half way: unlike either prompt throughout.
    whole = {"fusion_selection": "0,1,1", "mode": 2}
    edited = webui.latents(fusion(prompt="[a lion:a cartoon lion:0.5]", **whole), batch_size=2, steps=6)
    for prompt in ("a lion", "a cartoon lion"):
        assert not torch.equal(edited, webui.latents(fusion(prompt=prompt, **whole), batch_size=2, steps=6))


def test_skipped_uncond_steps_still_fuse(webui):
    shared.opts.skip_early_cond = 0.5
    p = webui.processing(fusion(), steps=8)
    out = torch.stack(processing.process_images(p).latents)
    assert torch.isfinite(out).all()
    assert p.model_fusion_run.stats.fused_steps > 0


def test_hires_fix_fuses_both_passes(webui):
    p = webui.processing(fusion(), enable_hr=True, hr_scale=1.5, steps=6, denoising_strength=0.7)
    out = processing.process_images(p).latents
    assert out[0].shape == (4, 12, 12)
    assert len(p.model_fusion_run.stats.kinds) > 6  # steps of the second pass counted too


@pytest.mark.parametrize("with_mask", [False, True])
def test_img2img_and_inpainting(webui, with_mask):
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    mask = None
    if with_mask:
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., 2:6, 2:6] = 1
    kwargs = {"img2img": True, "init_latent": init, "mask": mask, "denoising_strength": 0.8, "steps": 8}
    fused = webui.latents(fusion(fusion_selection="999,1,1", mode=1), **kwargs)
    plain = webui.latents(None, **kwargs)
    assert not torch.equal(fused, plain)


def test_text_encoder_own_uses_the_fusion_checkpoints_encoder(webui):
    solo_encoder = webui.latents(fusion(fusion_selection="0,1,1"))
    own_encoder = webui.latents(fusion(fusion_selection="0,1,1", text_encoder="own"))
    assert not torch.equal(solo_encoder, own_encoder)
    assert CACHE.key.parts == ("unet", "text_encoder")


def test_cache_reuses_the_fusion_model_and_reloads_on_change(webui):
    webui.generate(fusion())
    loads = CACHE.loads
    webui.generate(fusion())
    assert CACHE.loads == loads
    webui.generate(fusion(text_encoder="own"))
    # The UNet alone is held until a fusion text encoder is needed (AUTOMATIC1111 reads no more;
    # Forge's loader builds the whole checkpoint and the fusion lets go of the encoder).
    assert CACHE.loads == loads + 1
    webui.generate(fusion())
    assert CACHE.loads == loads + 1  # the build with the encoder serves a generation without


def test_active_weights_and_hooks_unchanged_after_generations(webui):
    before = weights_hash(shared.sd_model)
    plain_before = webui.latents(None, extension=False)
    for args in (fusion(), fusion(solo="fusion", mode=1), fusion(text_encoder="own", mask="soft")):
        webui.generate(args, batch_size=2)
    assert weights_hash(shared.sd_model) == before
    assert torch.equal(webui.latents(None, extension=False), plain_before)


def test_infotext_names_every_parameter(webui):
    processed = webui.generate(fusion(prompt="cartoon, lion", mode=1))
    from modules.infotext_utils import parse_generation_parameters

    from lib_fusion.arguments.infotext import from_infotext

    params = parse_generation_parameters(processed.infotexts[0])
    restored = from_infotext(params)
    assert restored.model == webui.title("expert")
    assert restored.prompt == "cartoon, lion" and restored.mode == 1 and restored.fusion_selection == "600,1,1"


def test_interrupt_leaves_nothing_behind(webui):
    def interrupt(step):
        if step == 2:
            shared.state.interrupted = True

    shared.state.on_step = interrupt
    try:
        p = webui.processing(fusion(), steps=8)
        processing.process_images(p)
    finally:
        shared.state.on_step = None
    assert p.model_fusion_held.patched == []
    shared.state.reset()
    assert torch.equal(webui.latents(None, extension=False), webui.latents(fusion(enabled=False)))


def test_same_checkpoint_with_another_prompt_reuses_the_active_unet(webui):
    """MagicFusion application 2: one fine-tuned model, two prompts."""
    p = webui.processing(fusion(model="general", prompt="a lion in a forest"), steps=6)
    processing.process_images(p)
    assert p.model_fusion_run.stats.fused_steps > 0
    assert not errors.reported


def test_a_copied_processing_object_runs_its_own_sampling(webui):
    """The X/Y/Z plot copies p per cell; the copy must not sample through the source."""
    import copy

    p = webui.processing(fusion(), steps=4)
    processing.process_images(p)
    wrapped = webui.processing(fusion(), steps=4)
    wrapped.scripts.process(wrapped)  # wraps wrapped.sample
    cell = copy.copy(wrapped)
    cell.seed = 99
    out = torch.stack(processing.process_images(cell).latents)
    assert cell.model_fusion_run is not wrapped.model_fusion_run
    reference = webui.latents(fusion(), steps=4, seed=99)
    assert torch.equal(out, reference)
