"""Cross-model guidance, base uncond and SNB's steadier masks through whole generations:
against the papers' rules restated over the official DDIM loop, their exact invariants, and
the UNet rows each step runs."""

import shutil

import pytest
import torch
from modules import infotext_utils, sd_models, shared

from lib_fusion.arguments.infotext import from_infotext
from tests.host.test_official_snb import CFG, NEGATIVE, PROMPT_A, PROMPT_B, Recorder, encode, fusion_unet

STEPS = 10


def ddim(eps_of, x_T, steps):
    """The official DDIM loop (eta 0) with any per-step rule ``eps_of(x, t)``: x_t on entry to
    every step, then the result."""
    alphas_cumprod = shared.sd_model.alphas_cumprod
    timesteps = torch.arange(0, 1000, 1000 // steps) + 1
    alphas, alphas_prev = alphas_cumprod[timesteps], torch.cat([alphas_cumprod[:1], alphas_cumprod[timesteps[:-1]]])
    xs, x = [], x_T
    for index in reversed(range(len(timesteps))):
        xs.append(x)
        e_t = eps_of(x, torch.full((x.shape[0],), float(timesteps[index])), int(timesteps[index]))
        pred_x0 = (x - (1 - alphas[index]).sqrt() * e_t) / alphas[index].sqrt()
        x = alphas_prev[index].sqrt() * pred_x0 + (1.0 - alphas_prev[index]).sqrt() * e_t
    return [*xs, x]


def run_against(webui, fusion, eps_of, batch=2):
    with Recorder() as seen:
        out = webui.latents(
            fusion, prompt=PROMPT_A, negative_prompt=NEGATIVE, sampler_name="DDIM", steps=STEPS, cfg_scale=CFG,
            batch_size=batch, width=128, height=128, seed=3,
        )  # fmt: skip
    host = [x[-batch:] for x in seen.x] + [out]
    with torch.no_grad():
        reference = ddim(eps_of, host[0], STEPS)
    for i, (a, b) in enumerate(zip(host, reference)):
        assert (a - b).abs().max() <= 1e-4, f"x_t departs from the restated rule at call {i}"
    return out


def models(webui):
    unet_a, unet_b = webui.unet(), fusion_unet(webui)
    cond_a, cond_b, uncond = encode([PROMPT_A] * 2), encode([PROMPT_B] * 2), encode([NEGATIVE] * 2)
    return unet_a, unet_b, cond_a, cond_b, uncond


@pytest.mark.a1111_only("the restated DDIM loop")
def test_guidance_follows_autoguidance_over_the_ddim_loop(webui):
    unet_a, unet_b, cond_a, cond_b, uncond = models(webui)
    w, v1 = 2.5, 500

    def eps_of(x, t, step_t):
        k_a, u_a = unet_a(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([cond_a, uncond])).chunk(2)
        if not step_t > v1:
            return u_a + (k_a - u_a) * CFG
        k_b = unet_b(x, t, context=cond_b)
        return u_a + CFG * (k_a - u_a) + (w - 1) * (k_a - k_b)  # Karras et al. 2024, eq. 1, with CFG

    fusion = {"enabled": True, "model": "expert", "method": "guidance", "prompt": PROMPT_B, "guidance_weight": w}
    run_against(webui, {**fusion, "fusion_selection": f"{v1},1,1", "mode": 2}, eps_of)


@pytest.mark.a1111_only("the restated DDIM loop")
def test_base_uncond_follows_its_rule_over_the_ddim_loop(webui):
    unet_a, unet_b, cond_a, _, uncond = models(webui)

    def eps_of(x, t, step_t):
        k_a, u_b = unet_a(x, t, context=cond_a), unet_b(x, t, context=uncond)
        return u_b + CFG * (k_a - u_b)  # "Unconditional Priors Matter": D = D_B(u) + s (D_A(c) - D_B(u))

    run_against(webui, {"enabled": True, "model": "expert", "method": "base_uncond", "fusion_selection": "1000,1,1", "mode": 1}, eps_of)


class RowCounter:
    """UNet rows run, per UNet (the stand-in UNet runs rows one by one: count the outer call)."""

    def __init__(self, monkeypatch, **unets):
        self.rows = dict.fromkeys(unets, 0)
        for name, unet in unets.items():
            original = unet.forward
            depth = [0]

            def counted(x, *args, _name=name, _original=original, _depth=depth, **kwargs):
                if _depth[0] == 0:
                    self.rows[_name] += x.shape[0]
                _depth[0] += 1
                try:
                    return _original(x, *args, **kwargs)
                finally:
                    _depth[0] -= 1

            monkeypatch.setattr(unet, "forward", counted)


def test_only_the_needed_rows_run(webui, monkeypatch):
    batch, steps = 2, 4  # Euler: 4 calls, all inside the window
    webui.generate({"enabled": True, "model": "expert"}, steps=1)  # load the fusion UNet
    counter = RowCounter(monkeypatch, active=webui.unet(), fusion=webui.fusion_unet())
    everything = {"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1}
    webui.generate({**everything, "method": "guidance", "guidance_weight": 2.0}, steps=steps, batch_size=batch)
    assert counter.rows == {"active": 2 * batch * steps, "fusion": batch * steps}  # + B's cond rows only: 1.5 x
    counter.rows.update(active=0, fusion=0)
    webui.generate({**everything, "method": "base_uncond"}, steps=steps, batch_size=batch)
    assert counter.rows == {"active": batch * steps, "fusion": batch * steps}  # A's uncond rows replaced by B's: 1.0 x
    counter.rows.update(active=0, fusion=0)
    webui.generate({**everything, "method": "guidance", "guidance_weight": 1.0}, steps=steps, batch_size=batch)
    assert counter.rows == {"active": 2 * batch * steps, "fusion": 0}  # w = 1: B is not needed


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC"])
def test_guidance_at_weight_one_is_the_plain_image(webui, sampler):
    fusion = {"enabled": True, "model": "expert", "method": "guidance", "guidance_weight": 1.0, "fusion_selection": "1000,1,1", "mode": 1}
    assert torch.equal(webui.latents(fusion, sampler_name=sampler, batch_size=2), webui.latents(None, sampler_name=sampler, batch_size=2))


@pytest.fixture
def twin(webui):
    """A second file with the active checkpoint's very weights (the same model, another name)."""
    shutil.copy(webui.models / "general.safetensors", webui.models / "twin.safetensors")
    sd_models.list_models()
    return "twin"


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM"])
def test_base_uncond_and_the_mean_mask_of_a_model_with_itself_are_the_plain_image(webui, twin, sampler):
    """Bit for bit here (the stand-in UNet computes each row alone); on a real host B's uncond
    rows run in a call of their own, so a batched kernel may round them differently."""
    plain = webui.latents(None, sampler_name=sampler, batch_size=2)
    window = {"fusion_selection": "1000,1,1", "mode": 1}
    assert torch.equal(
        webui.latents({"enabled": True, "model": twin, "method": "base_uncond", **window}, sampler_name=sampler, batch_size=2), plain
    )
    assert torch.equal(webui.latents({"enabled": True, "model": twin, "mask": "mean", **window}, sampler_name=sampler, batch_size=2), plain)


def test_the_active_checkpoint_against_itself_is_refused_for_every_two_model_method(webui):
    for method in ("guidance", "base_uncond"):
        with pytest.raises(ValueError, match="is the active checkpoint"):
            webui.generate({"enabled": True, "model": "general", "method": method})
    webui.generate({"enabled": True, "model": "general", "method": "guidance", "prompt": "a cartoon lion"}, steps=2)  # another prompt: fine


def test_steadier_masks_change_the_image_and_keep_batches_invariant(webui):
    base = {"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1}
    official = webui.latents(base, steps=8, batch_size=2, seed=4)
    for options in ({"mask_ema": 0.8}, {"mask_freeze": 2}, {"per_channel": True, "blur": "gaussian3"}, {"mask": "mean"}):
        steadier = webui.latents({**base, **options}, steps=8, batch_size=2, seed=4)
        assert not torch.equal(steadier, official), options
        for i in range(2):
            assert torch.equal(webui.latents({**base, **options}, steps=8, seed=4 + i)[0], steadier[i]), options


def test_new_fields_round_trip_through_the_infotext_and_compare_and_preview_work(webui):
    fusion = {
        "enabled": True,
        "model": "expert",
        "method": "guidance",
        "guidance_weight": 2.5,
        "prompt": PROMPT_B,
        "compare": True,
        "preview": True,
    }
    processed = webui.generate({**fusion, "fusion_selection": "1000,1,1", "mode": 1}, steps=4)
    restored = from_infotext(infotext_utils.parse_generation_parameters(processed.infotexts[0]))
    assert (restored.method, restored.guidance_weight, restored.prompt) == ("guidance", 2.5, PROMPT_B)
    labels = [text.rsplit("Fusion output: ", 1)[-1].strip('"') for text in processed.infotexts[1:]]
    assert "guidance preview" in labels and any(label.startswith("A alone") for label in labels)
    snb = {"enabled": True, "model": "expert", "mask_ema": 0.5, "mask_freeze": 3, "per_channel": True, "blur": "gaussian3", "mask": "mean"}
    restored = from_infotext(infotext_utils.parse_generation_parameters(webui.generate(snb, steps=2).infotexts[0]))
    assert (restored.mask_ema, restored.mask_freeze, restored.per_channel, restored.blur, restored.mask) == (
        0.5,
        3,
        True,
        "gaussian3",
        "mean",
    )


def test_the_fusion_checkpoints_prompts_go_where_it_runs(webui):
    """Base uncond runs A's positive and B's negative rows: with solo "fusion" the fusion
    checkpoint is A, so its prompt counts and its negative prompt is not read."""
    base = {"enabled": True, "model": "expert", "method": "base_uncond", "solo": "fusion", "fusion_selection": "1000,1,1", "mode": 1}
    plain_prompts = webui.latents(base, steps=3)
    assert not torch.equal(webui.latents({**base, "prompt": "a cartoon lion"}, steps=3), plain_prompts)
    assert torch.equal(webui.latents({**base, "negative_prompt": "something else"}, steps=3), plain_prompts)
    same = {**base, "model": "general", "negative_prompt": "something else"}  # the active checkpoint, nothing it reads differs
    with pytest.raises(ValueError, match="is the active checkpoint"):
        webui.generate(same, steps=2)
