"""DDIM and UniPC over CompVisTimestepsDenoiser or, for a v model, CompVisTimestepsVDenoiser
(both output eps; sigma carries the DDPM timestep).

UniPC here keeps the host's contract, not its solver: ``steps`` model calls at fractional
timesteps from the uniform continuous-time schedule (4 steps: 999, 749.25, 499.5, 249.75),
with a first-order update between them.
"""

import torch

from modules import sd_samplers_cfg_denoiser, sd_samplers_common, shared


class CompVisTimestepsDenoiser(torch.nn.Module):
    def __init__(self, model, *args, **kwargs):
        super().__init__()
        self.inner_model = model

    def forward(self, input, timesteps, **kwargs):
        return self.inner_model.apply_model(input, timesteps, **kwargs)


class CompVisTimestepsVDenoiser(torch.nn.Module):
    """A v-prediction model's output as eps: ``eps = sqrt(a_t) v + sqrt(1 - a_t) x_t``."""

    def __init__(self, model, *args, **kwargs):
        super().__init__()
        self.inner_model = model

    def predict_eps_from_z_and_v(self, x_t, t, v):
        alphas = self.inner_model.alphas_cumprod
        return alphas.sqrt()[t.to(torch.int), None, None, None] * v + (1 - alphas).sqrt()[t.to(torch.int), None, None, None] * x_t

    def forward(self, input, timesteps, **kwargs):
        return self.predict_eps_from_z_and_v(input, timesteps, self.inner_model.apply_model(input, timesteps, **kwargs))


class CFGDenoiserTimesteps(sd_samplers_cfg_denoiser.CFGDenoiser):
    def __init__(self, sampler):
        super().__init__(sampler)
        self.alphas = shared.sd_model.alphas_cumprod
        self.mask_before_denoising = True

    def get_pred_x0(self, x_in, x_out, sigma):
        a_t = self.alphas[sigma.to(dtype=int)][:, None, None, None]
        return (x_in - (1 - a_t).sqrt() * x_out) / a_t.sqrt()

    @property
    def inner_model(self):
        if self.model_wrap is None:
            denoiser = CompVisTimestepsVDenoiser if shared.sd_model.parameterization == "v" else CompVisTimestepsDenoiser
            self.model_wrap = denoiser(shared.sd_model)
        return self.model_wrap


NAMES = ("DDIM", "UniPC")


def alphas_at(t):
    """The host's ``NoiseScheduleVP('discrete')``: log alpha interpolated at a fractional timestep."""
    log_alphas = shared.sd_model.alphas_cumprod.log()
    low = t.floor().long().clamp(0, 998)
    w = t - low
    return (log_alphas[low] * (1 - w) + log_alphas[low + 1] * w).exp()


def unipc_timesteps(steps, t_start=1.0):
    return (torch.linspace(t_start, 1 / 1000, steps + 1, device=shared.sd_model.alphas_cumprod.device) - 1 / 1000) * 1000


def get_timesteps(steps):
    device = shared.sd_model.alphas_cumprod.device
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps)), dtype=torch.int, device=device) + 1, 0, 999)


class CompVisSampler(sd_samplers_common.Sampler):
    def __init__(self, name, sd_model):
        super().__init__(name)
        self.model_wrap_cfg = CFGDenoiserTimesteps(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_timesteps(self, p, steps):
        """The host's: the DDPM timesteps it will step through, first to last reversed."""
        return get_timesteps(steps)

    def _ddim(self, x, timesteps, extra):
        alphas_cumprod = shared.sd_model.alphas_cumprod
        alphas = alphas_cumprod[timesteps]
        alphas_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[timesteps[:-1]]])
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(timesteps) - 1):
            index = len(timesteps) - 1 - i
            e_t = self.model_wrap_cfg(x, timesteps[index].item() * s_in, **extra)
            self.callback_state(i)
            a_t, a_prev = alphas[index], alphas_prev[index]
            pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
            x = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e_t
        return x

    def _unipc(self, x, times, extra):
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(times) - 1):
            e_t = self.model_wrap_cfg(x, times[i].item() * s_in, **extra)
            self.callback_state(i)
            a_t, a_next = alphas_at(times[i]), alphas_at(times[i + 1])
            pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
            x = a_next.sqrt() * pred_x0 + (1 - a_next).sqrt() * e_t
        return x

    def _run(self, p, x, timesteps, cond, uncond, image_conditioning, steps, t_start=1.0):
        extra = self.extra_args(p, cond, uncond, image_conditioning)
        self.setup_denoiser(p, steps)
        if self.funcname == "UniPC":
            times = unipc_timesteps(len(timesteps) if t_start < 1 else steps, t_start)
            return self.launch_sampling(steps, lambda: self._unipc(x, times, extra))
        return self.launch_sampling(steps, lambda: self._ddim(x, timesteps, extra))

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        return self._run(p, x, get_timesteps(steps), conditioning, unconditional_conditioning, image_conditioning, steps)

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        t_enc = max(1, int(min(p.denoising_strength, 0.999) * steps))
        schedule = get_timesteps(steps)
        timesteps = schedule[:t_enc]  # as the WebUI's: noised to schedule[t_enc], stepped through the t_enc below it
        a_t = shared.sd_model.alphas_cumprod[schedule[t_enc]]
        xi = a_t.sqrt() * x + (1 - a_t).sqrt() * noise
        t_start = schedule[t_enc].item() / 1000 + 1 / 1000
        return self._run(p, xi, timesteps, conditioning, unconditional_conditioning, image_conditioning, t_enc, t_start)
