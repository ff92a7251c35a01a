"""Rectified-flow families (Flux, SD3 … on Forge and Neo) through whole generations.

The stand-in's flow checkpoints are tiny DiTs over a 16-channel latent (``tiny_sd.TinyDiT``),
run by Forge's flow predictors on Neo's Normal schedule. Held here: a byte copy of the active
checkpoint with the same prompts gives the plain image for every method; SNB follows an
independent restatement of MagicFusion's step in flow units (velocity in, saliency on the eps
response ``(1 - sigma) s (v_c - v_u)``, the window on the share of the flow's own time); the
window means the same share of the denoising as on the Stable Diffusion axis; a pass that runs
no unconditional branch is refused for SNB; Regions respect the DiT's patch and native size
(``docs/flow.md``).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from modules import processing, sd_models, shared
from safetensors.torch import load_file
from test_official_snb import Recorder
from tiny_sd import TinyDiT

CFG = 4.0
PROMPT, FUSION_PROMPT, NEGATIVE = "a lion :0.7 AND a crown :0.6", "a cartoon lion", "blurry"
IDENTITY_METHODS = [
    {"mask": "hard"},
    {"mask": "soft"},
    {"mask": "mean"},
    {"mask": "soft", "fusion_selection": "600,0.5,2", "mode": 2},
    {"method": "guidance", "guidance_weight": 2.5},
    {"method": "base_uncond"},
    {"method": "regions", "regions": [{"box": [0.0, 0.0, 0.5, 1.0], "model": "twin"}], "window": 0, "bootstrapping": 0},
]


def byte_copy(webui, name, of="general"):
    (webui.models / f"{name}.safetensors").write_bytes((webui.models / f"{of}.safetensors").read_bytes())
    sd_models.list_models()


@pytest.mark.parametrize("method", IDENTITY_METHODS, ids=lambda method: "-".join(map(str, method.values()))[:40])
def test_a_byte_copy_of_the_active_checkpoint_with_the_same_prompts_gives_the_plain_image(flow_webui, method):
    byte_copy(flow_webui, "twin")
    kind = {"steps": 4, "batch_size": 2, "prompt": PROMPT, "cfg_scale": CFG, "width": 128}
    plain = flow_webui.latents(None, extension=False, **kind)
    p = flow_webui.processing({"enabled": True, "model": "twin", "fusion_selection": "0,1,1", **method}, **kind)
    fused = torch.stack(processing.process_images(p).latents)
    stats = p.model_fusion_run.stats
    assert stats.fused_steps == stats.fusion_runs > 0 or stats.region_calls > 0
    assert torch.equal(fused, plain)


def test_the_fusion_prompts_carry_the_passes_distilled_cfg_scale(flow_webui):
    """Flux reads its Distilled CFG Scale from the prompts: the prompts the fusion encodes itself
    (here the main prompt given again as the fusion prompt) carry the generation's, so a byte
    copy still gives the plain image at a scale other than the engine's default."""
    byte_copy(flow_webui, "twin")
    kind = {"steps": 3, "prompt": "a lion", "cfg_scale": CFG, "distilled_cfg_scale": 6.0}
    plain = flow_webui.latents(None, extension=False, **kind)
    fusion = {"enabled": True, "model": "twin", "prompt": "a lion", "text_encoder": "own", "fusion_selection": "0,1,1"}
    assert torch.equal(flow_webui.latents(fusion, **kind), plain)
    if shared.sd_model.use_distilled_cfg_scale:  # the scale matters to this family: the test could fail
        assert not torch.equal(flow_webui.latents(None, extension=False, **{**kind, "distilled_cfg_scale": 3.0}), plain)


def flow_dit(webui, name) -> torch.nn.Module:
    """A checkpoint's DiT, built here from its file (not by the extension)."""
    weights = load_file(str(webui.models / f"{name}.safetensors"))
    prefix = "model.diffusion_model."
    dit_weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    dit = TinyDiT(hidden=dit_weights["patch_in.weight"].shape[0], guidance_embed="guidance_in.weight" in dit_weights)
    dit.load_state_dict(dit_weights)
    return dit.eval().requires_grad_(False)


def share_of_time(sigma: float) -> float:
    """The family's time ``u`` at noise level sigma, from its shift's closed-form inverse (the
    extension reads it from the predictor's table instead): SD3's ``u = s / (shift - (shift - 1) s)``,
    Flux's ``u = 1 / (1 + e^mu (1 / s - 1))``."""
    predictor = shared.sd_model.forge_objects.unet.model.predictor
    if sigma <= 0:
        return 0.0
    if predictor.flux:
        return 1 / (1 + math.exp(predictor.shift) * (1 / sigma - 1))
    return sigma / (predictor.shift - (predictor.shift - 1) * sigma)


def velocity(dit, x, sigma, context, guidance):
    """The DiT's output at noise level sigma: Flux is given sigma, SD3 ``1000 sigma``."""
    return dit(x, sigma * (1.0 if dit.guidance_in is not None else 1000.0), context=context, guidance=guidance)


def official_snb_velocity(dit_a, dit_b, x, sigma, cond_a, cond_b, uncond, guidance):
    """MagicFusion's fused step (official ``p_sample_ddim``: B's response against A's uncond,
    4x4 average pool, softmax over the latent's pixels, B where strictly larger) in flow
    units: each model's velocity, CFG on it, the saliency on the eps response. With ``x0 = x -
    sigma v``, ``eps = x + (1 - sigma) v``, so an eps response is ``(1 - sigma)`` times the
    velocity's."""
    k_a, u_a = velocity(dit_a, x, sigma, cond_a, guidance), velocity(dit_a, x, sigma, uncond, guidance)
    k_b, u_b = velocity(dit_b, x, sigma, cond_b, guidance), velocity(dit_b, x, sigma, uncond, guidance)
    v_a, v_b = u_a + (k_a - u_a) * CFG, u_b + (k_b - u_b) * CFG
    scale = (1 - sigma)[:, None, None, None]
    d_a, d_b = (k_a - u_a) * CFG * scale, (k_b - u_a) * CFG * scale
    height, width = x.shape[-2:]

    def saliency(d):
        pooled = F.avg_pool2d(d.abs(), kernel_size=4, stride=1, padding=1, count_include_pad=True)
        return F.interpolate(pooled, size=(height, width), mode="bilinear", align_corners=False).mean(dim=1, keepdim=True)

    n = x.shape[0]
    l_a = torch.softmax(saliency(d_a).reshape(n, -1), dim=1).reshape(n, 1, height, width)
    l_b = torch.softmax(saliency(d_b).reshape(n, -1), dim=1).reshape(n, 1, height, width)
    return torch.where(l_b > l_a, v_b, v_a), l_a, l_b


def encode(texts):
    with torch.no_grad():
        return shared.sd_model.get_learned_conditioning(texts)


@pytest.mark.parametrize(("selection", "mode"), [("600,1,1", 2), ("450,1,1", 1)])
def test_snb_follows_the_official_step_in_flow_units_step_by_step(flow_webui, selection, mode):
    """The whole generation against the restatement: at every step the host's latent is the
    restated Euler step of the restated fused velocity (A alone outside the window, which is
    read on the share of the flow's time: ``t = 1000 u``)."""
    steps, batch = 8, 2
    args = {"enabled": True, "model": "expert", "prompt": FUSION_PROMPT, "fusion_selection": selection, "mode": mode}
    kind = {"prompt": "a lion", "negative_prompt": NEGATIVE, "steps": steps, "cfg_scale": CFG, "batch_size": batch, "seed": 5}
    kind["distilled_cfg_scale"] = 5.0
    with Recorder() as seen:
        out = flow_webui.latents(args, width=96, height=64, **kind)
    v1 = float(selection.split(",")[0])
    cond_a, cond_b, uncond = encode(["a lion"] * batch), encode([FUSION_PROMPT] * batch), encode([NEGATIVE] * batch)
    guidance = torch.full((batch,), 5.0)  # Flux's distilled guidance, as the generation set it (SD3's DiT has none)
    dit_a, dit_b = flow_dit(flow_webui, "general"), flow_dit(flow_webui, "expert")
    sigmas = [float(s[0]) for s in seen.sigma] + [0.0]
    xs = [x[-batch:] for x in seen.x] + [out]
    fused_steps = 0
    for i in range(steps):  # each step from the host's own x_t: a difference cannot carry over
        x, sigma = xs[i], torch.full((batch,), sigmas[i])
        t = 1000 * share_of_time(sigmas[i])
        fused = t > v1 if mode == 2 else not t > v1
        near_tie = torch.zeros_like(x, dtype=torch.bool)
        with torch.no_grad():
            if fused:
                text = (cond_a["crossattn"], cond_b["crossattn"], uncond["crossattn"])
                v, l_a, l_b = official_snb_velocity(dit_a, dit_b, x, sigma, *text, guidance)
                # Measured in x0 units and scaled, the saliency rounds otherwise than in velocity
                # units here: only a pixel whose two softmax values tie to within that rounding
                # may pick the other model (the Euler step is per pixel, so it stays there). An
                # exact tie (sigma 1: no response at all) goes to A on both sides.
                near = (l_a - l_b).abs() <= 1e-5 * torch.maximum(l_a, l_b)
                near_tie = (near & (l_a != l_b)).expand_as(x)
            else:
                k_a, u_a = (
                    velocity(dit_a, x, sigma, cond_a["crossattn"], guidance),
                    velocity(dit_a, x, sigma, uncond["crossattn"], guidance),
                )
                v = u_a + (k_a - u_a) * CFG
        fused_steps += fused
        expected = x + v * (sigmas[i + 1] - sigmas[i])  # Euler: x0 = x - sigma v, d = (x - x0) / sigma = v
        assert near_tie.float().mean() < 0.01
        difference = (xs[i + 1] - expected).abs()[~near_tie]
        assert difference.max() <= 1e-4 * expected.abs().max(), f"x_t departs from the restatement at step {i}"
    assert 0 < fused_steps < steps


@pytest.mark.parametrize(("selection", "mode", "fused"), [("600,1,1", 2, 4), ("600,1,1", 1, 6), ("0,1,1", 2, 10), ("1000,1,1", 2, 0)])
def test_the_window_is_the_same_share_of_the_denoising_as_on_the_sd_axis(flow_webui, selection, mode, fused):
    """``v1 = 600`` leaves the first 40 % of the denoising to one model: with ten steps of the
    family's own schedule, mode 2 fuses the first four, mode 1 the last six."""
    args = {"enabled": True, "model": "expert", "prompt": FUSION_PROMPT, "fusion_selection": selection, "mode": mode}
    p = flow_webui.processing(args, steps=10, cfg_scale=CFG)
    if fused == 0:
        with pytest.raises(Exception, match="no step .*inside the fusion window"):
            processing.process_images(p)
        return
    processing.process_images(p)
    assert p.model_fusion_run.stats.fused_steps == fused


def test_snb_at_cfg_scale_1_is_refused_for_want_of_an_unconditional_branch(flow_webui):
    """At CFG 1 the host runs the flow model without its unconditional branch (how the
    guidance-distilled ones are run): SNB's saliency has nothing to measure. The methods that
    need no response fuse there."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    with pytest.raises(Exception, match=r"at CFG scale 1 \(txt2img\) this flow-matching checkpoint runs no unconditional branch"):
        flow_webui.generate({"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}, steps=2, cfg_scale=1.0)
    assert CACHE.value is None
    plain = flow_webui.latents(None, extension=False, steps=2, cfg_scale=1.0)
    for method in ({"mask": "mean"}, {"method": "guidance"}, {"method": "regions", "regions": [{"box": [0, 0, 0.5, 1]}]}):
        assert not torch.equal(flow_webui.latents({"enabled": True, "model": "expert", "fusion_selection": "0,1,1", **method},
                                                  steps=2, cfg_scale=1.0), plain)  # fmt: skip


def test_a_hires_pass_at_cfg_scale_1_is_named_in_the_refusal(flow_webui):
    with pytest.raises(Exception, match=r"at CFG scale 1 \(hires pass\)"):
        flow_webui.generate({"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}, steps=2, cfg_scale=CFG, enable_hr=True)


def test_a_region_window_off_the_dits_patch_grid_is_refused(flow_webui):
    regions = {"enabled": True, "method": "regions", "model": "expert", "regions": [{"box": [0, 0, 0.5, 1]}], "window": 9, "stride": 4}
    with pytest.raises(Exception, match="window 9 is not a multiple of the active model.s patch size 2 .* use 8 or 10"):
        flow_webui.generate(regions, steps=2, cfg_scale=CFG)


def test_the_native_window_of_a_flow_family_is_128_latent_pixels(flow_webui):
    """Window 0 means the model's own size, 1024 pixels for the DiTs: a 1024-wide canvas is one view."""
    regions = {"enabled": True, "method": "regions", "model": "expert", "regions": [{"box": [0, 0, 0.5, 1]}], "window": 0, "stride": 8}
    p = flow_webui.processing(regions, width=1024, height=64, steps=1, cfg_scale=CFG)
    processing.process_images(p)
    assert p.model_fusion_run.stats.region_calls == 2  # one view: the background (active) and the region (fusion)


def test_a_dit_shared_without_its_text_encoder_loads_with_the_active_checkpoints_modules(flow_webui):
    """Flow DiTs are shared alone, their text encoders and VAE chosen beside them (Forge's
    ``forge_additional_modules``): the fusion checkpoint is loaded with the active one's, so
    the pair fuses exactly as the same weights in whole checkpoints do."""
    from safetensors.torch import save_file
    from standin import FLOW_FAMILIES, write_checkpoint

    family = next(name for name in FLOW_FAMILIES if (name == "flux") == shared.sd_model.use_distilled_cfg_scale)
    for name, seed in (("general-dit", 0), ("expert-dit", 1)):
        write_checkpoint(flow_webui.models / f"{name}.safetensors", seed=seed, family=family, text_encoder=False)
    encoder = {k: v for k, v in load_file(str(flow_webui.models / "general.safetensors")).items() if k.startswith("cond_stage_model.")}
    save_file(encoder, str(flow_webui.models.parent / "text-encoder.safetensors"))
    fusion = {"enabled": True, "model": "expert", "prompt": FUSION_PROMPT, "fusion_selection": "0,1,1"}
    whole = flow_webui.latents(fusion, steps=3, cfg_scale=CFG)
    shared.opts.forge_additional_modules = [str(flow_webui.models.parent / "text-encoder.safetensors")]
    sd_models.list_models()
    flow_webui.load("general-dit")
    assert torch.equal(flow_webui.latents({**fusion, "model": "expert-dit"}, steps=3, cfg_scale=CFG), whole)


def test_a_video_family_is_refused_by_name_before_anything_loads(flow_webui, monkeypatch):
    """Neo's Wan engines say so (``is_wan``): their latents carry a frame axis."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    monkeypatch.setattr(shared.sd_model, "is_wan", True, raising=False)
    with pytest.raises(Exception, match="the active checkpoint is a Wan video model"):
        flow_webui.generate({"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}, steps=2, cfg_scale=CFG)
    assert CACHE.value is None


def test_regions_at_cfg_scale_1_run_no_unconditional_rows(flow_webui):
    """Forge runs no uncond at CFG 1 and its combine then reads none: neither do the views, so
    a guidance-distilled model costs one pass per view, and the one-view layout of a byte copy
    is the plain image."""
    byte_copy(flow_webui, "twin")
    plain = flow_webui.latents(None, extension=False, steps=3, cfg_scale=1.0, batch_size=2)
    active = shared.sd_model.forge_objects.unet.model
    active.calls.clear()
    regions = {"enabled": True, "method": "regions", "model": "twin", "regions": [{"box": [0, 0, 0.5, 1], "model": "twin"}]}
    fused = flow_webui.latents({**regions, "window": 0, "bootstrapping": 0}, steps=3, cfg_scale=1.0, batch_size=2)
    assert active.calls == [2, 2, 2]  # the background's view, one row per image, each step
    assert torch.equal(fused, plain)


LONG_NEGATIVE = " ".join(f"word{index}" for index in range(80))
"""A negative prompt of two 75-token chunks (154 context rows) beside a prompt of one (77)."""


@pytest.mark.parametrize("method", [{"mask": "hard"}, {"method": "guidance", "guidance_weight": 2.5}, IDENTITY_METHODS[-1]], ids=str)
def test_a_prompt_and_negative_of_different_widths_are_batched_as_forge_batches_them(flow_webui, method):
    """Forge runs a prompt and a negative prompt of different token widths in one batch, each
    context repeated to their least common multiple; a DiT attends over the text tokens and the
    image's together, so the repetition changes its output. The fusion batches them the same
    way, and a byte copy still gives the plain image."""
    byte_copy(flow_webui, "twin")
    kind = {"steps": 3, "batch_size": 2, "negative_prompt": LONG_NEGATIVE, "cfg_scale": CFG, "width": 128}
    plain = flow_webui.latents(None, extension=False, **kind)
    assert torch.equal(flow_webui.latents({"enabled": True, "model": "twin", "fusion_selection": "0,1,1", **method}, **kind), plain)


@pytest.mark.parametrize("strength", [None, 0.3, 0.8])
def test_the_accordions_schedule_label_foresees_the_flow_steps(flow_webui, strength):
    """The accordion's line and the check before loading read the family's own time too: the
    timesteps they foresee are the ones the generation steps through, txt2img and img2img."""
    from lib_fusion import host
    from lib_fusion.ui import schedule_words

    predicted = host.step_timesteps("Euler", "Automatic", 10, strength)
    args = {"enabled": True, "model": "expert", "prompt": FUSION_PROMPT, "fusion_selection": "0,1,1"}
    if strength is None:
        p = flow_webui.processing(args, steps=10, cfg_scale=CFG)
    else:
        init = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
        p = flow_webui.processing(args, img2img=True, init_latent=init, denoising_strength=strength, steps=10, cfg_scale=CFG)
    processing.process_images(p)
    seen = p.model_fusion_run.stats.timesteps
    assert predicted == pytest.approx(seen, abs=1e-3) and seen[0] <= 1000.0
    line = schedule_words.describe(600, 2, predicted, "Euler", strength)
    assert ("a generation would be refused" in line) == (max(seen) <= 600)


@pytest.mark.parametrize("method", [{"mask": "mean"}, {"method": "guidance", "guidance_weight": 2.5}, IDENTITY_METHODS[-1]], ids=str)
def test_at_cfg_scale_1_the_positive_runs_alone_as_forge_runs_it(flow_webui, method):
    """At CFG 1 Forge runs the positive alone, its context not repeated beside a negative of
    another width: the methods that fuse there run it so, and a byte copy gives the plain image."""
    byte_copy(flow_webui, "twin")
    kind = {"steps": 3, "batch_size": 2, "negative_prompt": LONG_NEGATIVE, "cfg_scale": 1.0, "width": 128}
    plain = flow_webui.latents(None, extension=False, **kind)
    assert torch.equal(flow_webui.latents({"enabled": True, "model": "twin", "fusion_selection": "0,1,1", **method}, **kind), plain)


@pytest.mark.parametrize("name", ["patch_spatial", "patch"])
def test_a_dit_that_names_its_patch_otherwise_is_held_to_it_too(flow_webui, monkeypatch, name):
    """Anima calls it ``patch_spatial``, Krea ``patch``."""
    dit = shared.sd_model.forge_objects.unet.model.diffusion_model
    monkeypatch.delattr(type(dit), "patch_size")
    monkeypatch.setattr(dit, name, 2, raising=False)
    regions = {"enabled": True, "method": "regions", "model": "expert", "regions": [{"box": [0, 0, 0.5, 1]}], "window": 9, "stride": 4}
    with pytest.raises(Exception, match="window 9 is not a multiple of the active model's patch size 2"):
        flow_webui.generate(regions, steps=2, cfg_scale=CFG)
