"""CFGDenoiser.forward to the host contract: row layout, callbacks, skip, chunks, combine."""

import torch

from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (
    AfterCFGCallbackParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    cfg_after_cfg_callback,
    cfg_denoised_callback,
    cfg_denoiser_callback,
)


def cat_conds(conds):
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(conds)


def rows_of(cond, a, b):
    if isinstance(cond, dict):
        return {k: v[a:b] for k, v in cond.items()}
    return cond[a:b]


def width_of(cond):
    return (cond["crossattn"] if isinstance(cond, dict) else cond).shape[1]


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.model_wrap = None
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.steps = None
        self.total_steps = None
        self.step = 0
        self.sampler = sampler
        self.p = None
        self.cond_scale_miltiplier = 1.0
        self.mask_before_denoising = False
        self.log = []

    @property
    def inner_model(self):
        raise NotImplementedError

    def get_pred_x0(self, x_in, x_out, sigma):
        return x_out

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-uncond.shape[0] :]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def blend(self, latent):
        return latent * self.nmask + self.init_latent * self.mask

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if hasattr(shared.sd_model, "forge_objects"):  # the stand-in Forge: its own forward
            import forge_denoiser

            return forge_denoiser.forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        state, opts = shared.state, shared.opts
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException
        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)
        if self.mask_before_denoising and self.mask is not None:
            x = self.blend(x)
        batch_size = len(conds_list)
        repeats = [len(c) for c in conds_list]
        image_uncond = image_cond

        def make_condition_dict(c_crossattn, c_concat):
            if isinstance(c_crossattn, dict):
                return {**c_crossattn, "c_concat": [c_concat]}
            return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        x_in = torch.cat([torch.stack([x[i]] * n) for i, n in enumerate(repeats)] + [x])
        sigma_in = torch.cat([torch.stack([sigma[i]] * n) for i, n in enumerate(repeats)] + [sigma])
        image_cond_in = torch.cat([torch.stack([image_cond[i]] * n) for i, n in enumerate(repeats)] + [image_uncond])

        params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, tensor, uncond, self)
        cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond

        skip_uncond = False
        if opts.skip_early_cond != 0.0 and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
        if skip_uncond:
            x_in = x_in[:-batch_size]
            sigma_in = sigma_in[:-batch_size]

        calls = []

        def run(a_x, a_sigma, c, ic):
            calls.append(a_x.shape[0])
            return self.inner_model(a_x, a_sigma, cond=make_condition_dict(c, ic))

        if width_of(tensor) == width_of(uncond) or skip_uncond:
            cond_in = tensor if skip_uncond else cat_conds([tensor, uncond])
            if opts.batch_cond_uncond:
                x_out = run(x_in, sigma_in, cond_in, image_cond_in)
            else:
                x_out = torch.zeros_like(x_in)
                for a in range(0, x_out.shape[0], batch_size):
                    b = a + batch_size
                    x_out[a:b] = run(x_in[a:b], sigma_in[a:b], rows_of(cond_in, a, b), image_cond_in[a:b])
        else:
            x_out = torch.zeros_like(x_in)
            chunk = batch_size * 2 if opts.batch_cond_uncond else batch_size
            for a in range(0, tensor.shape[0], chunk):
                b = min(a + chunk, tensor.shape[0])
                x_out[a:b] = run(x_in[a:b], sigma_in[a:b], rows_of(tensor, a, b), image_cond_in[a:b])
            x_out[-uncond.shape[0] :] = run(
                x_in[-uncond.shape[0] :], sigma_in[-uncond.shape[0] :], uncond, image_cond_in[-uncond.shape[0] :]
            )
        self.log.append(calls)

        first_rows = [c[0][0] for c in conds_list]
        if skip_uncond:
            x_out = torch.cat([x_out, torch.cat([x_out[i : i + 1] for i in first_rows])])

        cfg_denoised_callback(CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model))
        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier
        denoised = self.combine_denoised(x_out, conds_list, uncond, scale)
        if not self.mask_before_denoising and self.mask is not None:
            denoised = self.blend(denoised)
        self.sampler.last_latent = self.get_pred_x0(
            torch.cat([x_in[i : i + 1] for i in first_rows]), torch.cat([x_out[i : i + 1] for i in first_rows]), sigma
        )
        sd_samplers_common.store_latent(self.sampler.last_latent)
        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        cfg_after_cfg_callback(after)
        self.step += 1
        return after.x
