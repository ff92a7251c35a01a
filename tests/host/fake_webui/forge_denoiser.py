"""Forge's ``CFGDenoiser.forward`` (``modules/sd_samplers_cfg_denoiser.py`` of Forge main and Neo):
``on_cfg_denoiser`` with one row per image, then Forge's ``sampling_function``; it never
calls ``on_cfg_denoised`` nor ``combine_denoised``."""

import flavour
import torch
from backend.sampling import sampling_function
from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import AfterCFGCallbackParams, CFGDenoiserParams, cfg_after_cfg_callback, cfg_denoiser_callback


def forward(denoiser, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
    state, opts = shared.state, shared.opts
    if state.interrupted or state.skipped:
        raise sd_samplers_common.InterruptedException
    cond_composition, cond = prompt_parser.reconstruct_multicond_batch(cond, denoiser.step)
    uncond = prompt_parser.reconstruct_cond_batch(uncond, denoiser.step) if uncond is not None else None
    if denoiser.mask is not None:
        predictor = denoiser.inner_model.inner_model.forge_objects.unet.model.predictor
        # Forge draws randn_like here; the stand-in draws per image seed, so a batch stays its seeds alone.
        noise = torch.stack(
            [
                torch.randn(denoiser.init_latent.shape[1:], generator=torch.Generator().manual_seed(seed * 1000 + denoiser.step))
                for seed in denoiser.p.seeds
            ]
        )
        noisy = predictor.noise_scaling(sigma[:, None, None, None], noise.to(denoiser.init_latent), denoiser.init_latent)
        x = x * denoiser.nmask + noisy * denoiser.mask
    params = CFGDenoiserParams(x, image_cond, sigma, state.sampling_step, state.sampling_steps, cond, uncond, denoiser)
    cfg_denoiser_callback(params)
    if denoiser.p.is_hr_pass:
        cond_scale = denoiser.p.hr_cfg
    if opts.skip_early_cond > 0 and denoiser.step / denoiser.total_steps <= opts.skip_early_cond:
        cond_scale = 1.0
    elif (denoiser.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
        cond_scale = 1.0
    arguments = {"denoiser_params": params, "cond_scale": cond_scale, "cond_composition": cond_composition}
    if flavour.neo():  # Neo hands the sampler's model options on, to be joined with the patcher's
        denoised, _, _ = sampling_function.neo_sampling_function(denoiser, **arguments, extra_model_options={})
    else:
        denoised, _, _ = sampling_function.sampling_function(denoiser, **arguments)
    if denoiser.mask is not None:
        denoised = denoised * denoiser.nmask + denoiser.init_latent * denoiser.mask
    denoiser.sampler.last_latent = denoised
    sd_samplers_common.store_latent(denoised)
    after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
    cfg_after_cfg_callback(after)
    denoiser.step += 1
    return after.x
