"""SNB over more than two checkpoints (``models``), through the stand-in WebUI on both hosts.

The rule is MagicFusion's, generalised: every model's guidance response (the fusion
checkpoints' against A's uncond, the official quirk applied to each), its blurred saliency,
``softmax(k S)``, and per latent pixel the largest value wins, ties to the earlier model.
"""

import pytest
import torch
import torch.nn.functional as F
from modules import processing, script_callbacks, shared
from modules.sd_samplers_kdiffusion import CompVisDenoiser
from safetensors.torch import load_file
from tiny_sd import TinyUNet

from lib_fusion.engine.checkpoint_cache import CACHE

CFG = 7.5
PROMPT_A, PROMPT_B, PROMPT_C, NEGATIVE = "a lion with a crown", "a cartoon lion", "an oil painting of a lion", ""


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2, **overrides}


def unet_of(webui, name):
    """A checkpoint's UNet, built here from its file (not by the extension)."""
    prefix = "model.diffusion_model."
    weights = load_file(str(webui.models / f"{name}.safetensors"))
    unet = TinyUNet()
    unet.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return unet.eval().requires_grad_(False)


def test_a_list_of_one_is_todays_snb_bit_for_bit(webui):
    kwargs = {"steps": 6, "batch_size": 2, "prompt": PROMPT_A}
    single = webui.latents(snb(prompt=PROMPT_B, fusion_selection="600,1,1.5"), **kwargs)
    listed = webui.latents(
        {**snb(model="", fusion_selection="600,1,1"), "models": [{"model": "expert", "prompt": PROMPT_B, "k": 1.5}]}, **kwargs
    )
    assert torch.equal(single, listed)


def test_a_checkpoint_outside_every_fused_step_runs_no_pass_and_is_refused(webui):
    """Fused while t > 600 (the first 40 % of the denoising); a third checkpoint that joins in
    the last 10 % only never runs: the image would not be fused by it, so it is refused,
    naming the checkpoint's place and its window."""
    shared.opts.model_fusion_max_models = 2
    kwargs = {"steps": 6, "prompt": PROMPT_A}
    p = webui.processing({**snb(prompt=PROMPT_B), "models": [{"model": "artist", "window": [0.9, 1.0]}]}, **kwargs)
    refusal = r"^Model Fusion: models\[0\]\.model 'artist.safetensors.*' joined no fused step: its window \[0\.9, 1\.0\]"
    with pytest.raises(ValueError, match=refusal):
        processing.process_images(p)
    assert p.model_fusion_run.stats.more_runs == {} and p.model_fusion_run.stats.fused_steps > 0


def test_three_checkpoints_follow_the_restated_rule_and_each_wins_somewhere(webui):
    """A k-diffusion step gives x0; the fused x0 of the first step must be ``x - sigma eps``
    with eps the restated three-model rule, and each of the three models must win pixels."""
    shared.opts.model_fusion_max_models = 2
    batch, factors = 2, (1.0, 2.0, 1.5)
    captured = {}

    def after_cfg(params):
        captured.setdefault("x0", params.x.detach().clone())

    def before(params):
        captured.setdefault("x", params.x.detach().clone())
        captured.setdefault("sigma", params.sigma.detach().clone())

    args = {
        **snb(prompt=PROMPT_B, fusion_selection="0,1,2"),
        "models": [{"model": "artist", "prompt": PROMPT_C, "k": 1.5}],
    }
    script_callbacks.on_cfg_after_cfg(after_cfg)
    script_callbacks.on_cfg_denoiser(before)
    try:
        p = webui.processing(args, prompt=PROMPT_A, negative_prompt=NEGATIVE, sampler_name="Euler", steps=3, cfg_scale=CFG,
                             batch_size=batch, width=128, height=128, seed=11)  # fmt: skip
        processing.process_images(p)
    finally:
        script_callbacks.remove_callbacks_for_function(after_cfg)
        script_callbacks.remove_callbacks_for_function(before)
    assert p.model_fusion_run.stats.more_runs == {webui.title("artist"): 3}
    x, sigma = captured["x"][-batch:], captured["sigma"][-batch:]
    if webui.forge_family:  # the UNet sees the schedule's nearest timestep there
        t = shared.sd_model.forge_objects.unet.model.predictor.timestep(sigma).float()
    else:
        t = CompVisDenoiser(shared.sd_model).sigma_to_t(sigma)
    c_in = (1 / (sigma**2 + 1) ** 0.5)[:, None, None, None]
    with torch.no_grad():
        encode = shared.sd_model.get_learned_conditioning
        uncond = encode([NEGATIVE] * batch)
        xs, ts = torch.cat([x * c_in] * 2), torch.cat([t, t])
        outs = []
        for unet, prompt in ((webui.unet(), PROMPT_A), (unet_of(webui, "expert"), PROMPT_B), (unet_of(webui, "artist"), PROMPT_C)):
            k, u = unet(xs, ts, context=torch.cat([encode([prompt] * batch), uncond])).chunk(2)
            outs.append((k, u))
    u_a = outs[0][1]
    guided = [u + (k - u) * CFG for k, u in outs]
    responses = [(k - u_a) * CFG for k, _ in outs]  # A's against its own uncond; B's and C's against A's
    h, w = x.shape[-2:]
    values = []
    for response, factor in zip(responses, factors):
        pooled = F.avg_pool2d(response.abs(), 4, 1, 1, count_include_pad=True)
        sal = F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False).mean(1, keepdim=True)
        values.append(torch.softmax(factor * sal.reshape(batch, -1), dim=1).reshape(batch, 1, h, w))
    stacked = torch.stack(values)
    choice = (stacked == stacked.max(dim=0).values).float().argmax(dim=0)  # the first model reaching the largest value
    assert set(choice.unique().tolist()) == {0, 1, 2}
    eps = torch.gather(torch.stack(guided), 0, choice[None].expand(1, *guided[0].shape))[0]
    expected = x - sigma[:, None, None, None] * eps
    top2 = stacked.topk(2, dim=0).values
    clear = ((top2[0] - top2[1]) > 1e-5 * top2[0]).expand_as(x)  # saliency in x0 units divided by sigma rounds otherwise
    assert clear.float().mean() > 0.99
    assert (captured["x0"] - expected)[clear].abs().max() <= 1e-4 * expected.abs().max()


def test_each_checkpoint_is_loaded_once_and_the_budget_holds_them(webui):
    shared.opts.model_fusion_max_models = 2
    args = {**snb(prompt=PROMPT_B), "models": [{"model": "artist"}]}
    webui.generate(args, steps=2)
    loads = CACHE.loads
    webui.generate(args, steps=2, batch_size=2, n_iter=2)
    assert CACHE.loads == loads and len(CACHE.held()) == 2


def test_the_comparison_shows_each_checkpoint_alone(webui):
    """With several fusion checkpoints the comparison adds C alone (and so on): each the
    checkpoint loaded as the active one with its own prompt (text_encoder own), same noise."""
    import numpy as np

    shared.opts.model_fusion_max_models = 2
    args = {**snb(prompt=PROMPT_B, text_encoder="own", compare=True), "models": [{"model": "artist", "prompt": PROMPT_C}]}
    processed = webui.generate(args, steps=3, prompt=PROMPT_A)
    labels = [text.split("Fusion output: ")[-1].strip('"') if "Fusion output: " in text else None for text in processed.infotexts]
    artist = webui.title("artist")
    assert labels == [None, f"A alone: {webui.title('general')}", f"B alone: {webui.title('expert')}", f"C alone: {artist}",
                      "comparison grid"]  # fmt: skip
    webui.load("artist")
    alone = webui.generate(None, extension=False, steps=3, prompt=PROMPT_C)
    difference = np.abs(np.asarray(processed.images[3], dtype=np.int16) - np.asarray(alone.images[0], dtype=np.int16))
    assert difference.max() <= 1  # the same model, prompt and noise: at most a rounding of the 8-bit image


def test_the_preview_colours_each_pixel_by_the_checkpoint_that_won_it(webui):
    shared.opts.model_fusion_max_models = 2
    args = {**snb(prompt=PROMPT_B, fusion_selection="0,1,2", preview=True), "models": [{"model": "artist", "prompt": PROMPT_C, "k": 1.5}]}
    processed = webui.generate(args, steps=3, prompt=PROMPT_A, width=128, height=128)
    [text] = [text for text in processed.infotexts if "Fusion output: winner preview" in text]
    picture = processed.images[processed.infotexts.index(text)]
    assert picture.width >= 128 and picture.height > 3 * 128  # three fused steps, a row each, under the legend


def test_the_progress_text_names_the_checkpoints_and_how_many_models_a_step_runs(webui, monkeypatch):
    """Before sampling: the checkpoints held besides the active one; then each fused step says
    how many models it runs (a checkpoint joins only inside its window: the first half here)."""
    from lib_fusion.host import sampling

    shared.opts.model_fusion_max_models = 2
    loading, seen = [], []
    monkeypatch.setattr(sampling, "show_progress", loading.append)  # the text set while loading
    monkeypatch.setattr(shared.state, "on_step", lambda step: seen.append(shared.state.textinfo), raising=False)
    args = {**snb(prompt=PROMPT_B, fusion_selection="0,1,1"), "models": [{"model": "artist", "window": [0, 0.5]}]}
    webui.generate(args, steps=4)
    assert loading == [f"checkpoints {webui.title('expert')}, {webui.title('artist')}"]
    assert [text.removeprefix("Model Fusion: ") for text in seen] == [
        "SNB (3 models) t=999",
        "SNB (3 models) t=666",
        "SNB t=333",
        "SNB t=0",
    ]
