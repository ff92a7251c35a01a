"""Whole generations against an independent restatement of MagicFusion's official sampler.

The official ``p_sample_ddim`` (MagicFusion.github.io @ eb5460c4, ``ldm/models/diffusion/ddim.py``)
is written out again here, in plain torch, without a line of ``lib_fusion``: run both UNets
on ``[x, x]`` with ``[cond, uncond]``, guide each, measure A's response against A's uncond and
B's **also against A's uncond** (the official quirk), blur with the 4x4 average pool and
resize back, softmax over the latent's pixels, pick B where its value is strictly larger,
then DDIM's eta-0 update. The generation runs through the stand-in WebUI and the real
``scripts/model_fusion.py``; its ``x_t`` is read from the WebUI's own ``on_cfg_denoiser``.

The two models differ and so do their unconditional predictions, and the CFG scale is not 1:
exactly the case where measuring B against its own uncond gives another mask.
"""

import pytest
import torch
import torch.nn.functional as F
from modules import script_callbacks, shared
from modules.sd_samplers_kdiffusion import CompVisDenoiser
from safetensors.torch import load_file
from tiny_sd import TinyUNet

CFG = 7.5
PROMPT_A, PROMPT_B, NEGATIVE = "a lion with a crown", "a cartoon lion", ""


def fusion_unet(webui) -> torch.nn.Module:
    """The fusion checkpoint's UNet, built here from its file (not by the extension)."""
    weights = load_file(str(webui.models / "expert.safetensors"))
    prefix = "model.diffusion_model."
    unet = TinyUNet()
    unet.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return unet.eval().requires_grad_(False)


def official_snb_eps(unet_a, unet_b, x, t, cond_a, cond_b, uncond, scale, kg, ke):
    """One fused eps prediction of the official ``p_sample_ddim`` (both prompts encoded by
    A's text encoder, one shared negative)."""
    x_in, t_in = torch.cat([x, x]), torch.cat([t, t])
    c_in_a, c_in_b = torch.cat([cond_a, uncond]), torch.cat([cond_b, uncond])
    k_a, u_a = unet_a(x_in, t_in, context=c_in_a).chunk(2)
    k_b, u_b = unet_b(x_in, t_in, context=c_in_b).chunk(2)
    eps_a = u_a + (k_a - u_a) * scale
    eps_b = u_b + (k_b - u_b) * scale
    d_a = (k_a - u_a) * scale
    d_b = (k_b - u_a) * scale  # the official quirk: B's response against A's uncond
    h, w = x.shape[-2:]

    def saliency(d):
        pooled = F.avg_pool2d(d.abs(), kernel_size=4, stride=1, padding=1, count_include_pad=True)
        return F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False).mean(dim=1, keepdim=True)

    n = x.shape[0]
    l_a = torch.softmax(kg * saliency(d_a).reshape(n, -1), dim=1).reshape(n, 1, h, w)
    l_b = torch.softmax(ke * saliency(d_b).reshape(n, -1), dim=1).reshape(n, 1, h, w)
    return torch.where(l_b > l_a, eps_b, eps_a), l_a, l_b


def official_eps_a(unet_a, x, t, cond_a, uncond, scale):
    k_a, u_a = unet_a(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([cond_a, uncond])).chunk(2)
    return u_a + (k_a - u_a) * scale


def official_ddim(unet_a, unet_b, x_T, steps, cond_a, cond_b, uncond, v1, kg, ke, mode):
    """The official DDIM loop (eta 0, ``make_ddim_timesteps`` uniform), returning ``x_t``
    on entry to every step, then the final latent."""
    alphas_cumprod = shared.sd_model.alphas_cumprod
    timesteps = torch.arange(0, 1000, 1000 // steps) + 1
    alphas = alphas_cumprod[timesteps]
    alphas_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[timesteps[:-1]]])
    xs, x = [], x_T
    for index in reversed(range(len(timesteps))):
        xs.append(x)
        step_t = int(timesteps[index])
        t = torch.full((x.shape[0],), float(step_t))
        fused = mode == 2 and step_t > v1 or mode == 1 and not step_t > v1
        if fused:
            e_t = official_snb_eps(unet_a, unet_b, x, t, cond_a, cond_b, uncond, CFG, kg, ke)[0]
        else:
            e_t = official_eps_a(unet_a, x, t, cond_a, uncond, CFG)
        a_t, a_prev = alphas[index], alphas_prev[index]
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1.0 - a_prev - 0.0**2).sqrt() * e_t
    xs.append(x)
    return xs


class Recorder:
    """The WebUI's own ``on_cfg_denoiser``: each call's x_in and sigma_in."""

    def __init__(self):
        self.x, self.sigma = [], []

    def __call__(self, params):
        self.x.append(params.x.detach().clone())
        self.sigma.append(params.sigma.detach().clone())

    def __enter__(self):
        script_callbacks.on_cfg_denoiser(self)
        return self

    def __exit__(self, *exc):
        script_callbacks.remove_callbacks_for_function(self)


def encode(texts):
    with torch.no_grad():
        return shared.sd_model.get_learned_conditioning(texts)


@pytest.mark.a1111_only("the official DDIM loop (Forge: the k-diffusion test below)")
@pytest.mark.parametrize(("selection", "mode"), [("600,1,1", 2), ("400,1,1", 1), ("1000,1,3", 1)])
def test_ddim_generation_follows_the_official_sampler_step_by_step(webui, selection, mode):
    steps, batch = 20, 2
    args = {"enabled": True, "model": "expert", "prompt": PROMPT_B, "fusion_selection": selection, "mode": mode}
    with Recorder() as seen:
        out = webui.latents(
            args, prompt=PROMPT_A, negative_prompt=NEGATIVE, sampler_name="DDIM", steps=steps, cfg_scale=CFG,
            batch_size=batch, width=128, height=128, seed=5,
        )  # fmt: skip
    host_xs = [x[-batch:] for x in seen.x] + [out]  # x_t entering each of the WebUI's steps, then the result
    v1, kg, ke = (float(v) for v in selection.split(","))
    unet_a = webui.unet()
    cond_a, cond_b, uncond = encode([PROMPT_A] * batch), encode([PROMPT_B] * batch), encode([NEGATIVE] * batch)
    with torch.no_grad():
        official = official_ddim(unet_a, fusion_unet(webui), host_xs[0], steps, cond_a, cond_b, uncond, v1, kg, ke, mode)
    # The WebUI's DDIM makes steps - 1 calls (t = 951 ... 51 here): they share the official
    # loop's first steps - 1, and its result is the official x_t entering t = 1.
    assert len(host_xs) == steps
    assert [float(s[0]) for s in seen.sigma] == [float(t) for t in (torch.arange(0, 1000, 1000 // steps) + 1).flip(0)[:-1]]
    for i, (host, reference) in enumerate(zip(host_xs, official)):
        assert (host - reference).abs().max() <= 1e-4, f"x_t departs from the official sampler at call {i}"
    assert not torch.equal(out, webui.latents(None, prompt=PROMPT_A, negative_prompt=NEGATIVE, sampler_name="DDIM", steps=steps,
                                              cfg_scale=CFG, batch_size=batch, width=128, height=128, seed=5))  # fmt: skip


def test_measuring_b_against_its_own_uncond_changes_the_mask_here(webui):
    """The case above is one where the quirk matters: B's own uncond picks other pixels."""
    with torch.no_grad():
        x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 5
        t = torch.full((2,), 801.0)
        cond_a, cond_b, uncond = encode([PROMPT_A] * 2), encode([PROMPT_B] * 2), encode([NEGATIVE] * 2)
        unet_a, unet_b = webui.unet(), fusion_unet(webui)
        _, l_a, l_b = official_snb_eps(unet_a, unet_b, x, t, cond_a, cond_b, uncond, CFG, 1.0, 1.0)
        u_a = unet_a(x, t, context=uncond)
        u_b = unet_b(x, t, context=uncond)
    assert (u_a - u_b).abs().max() > 0.1  # the two unconds differ
    official_mask = l_b > l_a
    k_b = unet_b(x, t, context=cond_b).detach()
    d_own = (k_b - u_b) * CFG
    own = F.interpolate(F.avg_pool2d(d_own.abs(), 4, 1, 1), size=(16, 16), mode="bilinear", align_corners=False).mean(1, keepdim=True)
    l_b_own = torch.softmax(own.reshape(2, -1), dim=1).reshape(2, 1, 16, 16)
    assert not torch.equal(official_mask, l_b_own > l_a)


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_kdiffusion_fused_step_is_the_official_rule_in_eps_units(webui, sampler):
    """A k-diffusion sampler's model gives x0; the fused x0 of a step must be
    ``x - sigma * eps_fused`` with the official SNB done in eps units."""
    batch = 2
    captured = {}

    def after_cfg(params):
        captured.setdefault("x0", params.x.detach().clone())

    args = {"enabled": True, "model": "expert", "prompt": PROMPT_B, "fusion_selection": "0,1,1", "mode": 2}
    script_callbacks.on_cfg_after_cfg(after_cfg)
    try:
        with Recorder() as seen:
            webui.generate(args, prompt=PROMPT_A, negative_prompt=NEGATIVE, sampler_name=sampler, steps=4, cfg_scale=CFG,
                           batch_size=batch, width=128, height=128, seed=9)  # fmt: skip
    finally:
        script_callbacks.remove_callbacks_for_function(after_cfg)
    x, sigma = seen.x[0][-batch:], seen.sigma[0][-batch:]
    if webui.forge_family:  # Forge's KModel gives the UNet the schedule's nearest timestep
        t = shared.sd_model.forge_objects.unet.model.predictor.timestep(sigma).float()
    else:  # AUTOMATIC1111's CompVisDenoiser interpolates in log sigma
        t = CompVisDenoiser(shared.sd_model).sigma_to_t(sigma)
    c_in = (1 / (sigma**2 + 1) ** 0.5)[:, None, None, None]
    cond_a, cond_b, uncond = encode([PROMPT_A] * batch), encode([PROMPT_B] * batch), encode([NEGATIVE] * batch)
    with torch.no_grad():
        eps, l_a, l_b = official_snb_eps(webui.unet(), fusion_unet(webui), x * c_in, t, cond_a, cond_b, uncond, CFG, 1.0, 1.0)
    expected = x - sigma[:, None, None, None] * eps
    # Choosing in x0 units and measuring saliency there (divided by sigma) rounds differently
    # from the eps-unit restatement: only a pixel whose two softmax values tie to within that
    # rounding may pick the other model; everywhere else the prediction is the same.
    near_tie = ((l_a - l_b).abs() <= 1e-5 * torch.maximum(l_a, l_b)).expand_as(x)
    assert near_tie.float().mean() < 0.01
    difference = (captured["x0"] - expected).abs()
    assert difference[~near_tie].max() <= 1e-4 * expected.abs().max()
