"""k-diffusion style samplers over k-diffusion's CompVis denoisers (they output denoised x0)."""

import math

import flavour
import torch
from backend.sampling import sampling_function
from k_diffusion.external import CompVisDenoiser, CompVisVDenoiser, ForgeScheduleLinker

from modules import devices, sd_samplers_cfg_denoiser, sd_samplers_common, shared


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None and hasattr(shared.sd_model, "forge_objects"):  # Forge and Neo
            self.model_wrap = ForgeScheduleLinker(shared.sd_model.forge_objects.unet.model.predictor)
            self.model_wrap.inner_model = shared.sd_model
        if self.model_wrap is None:
            denoiser = CompVisVDenoiser if getattr(shared.sd_model, "parameterization", "eps") == "v" else CompVisDenoiser
            self.model_wrap = denoiser(shared.sd_model, quantize=shared.opts.enable_quantization)
        return self.model_wrap


def karras_sigmas(n, sigma_min, sigma_max, rho=7.0):
    ramp = torch.linspace(0, 1, n, device=devices.device)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def normal_sigmas(n, wrap):
    """The WebUI's Normal schedule (``sd_schedulers.normal_scheduler``): evenly spaced in the
    model's timesteps from its largest sigma to its smallest, then zero."""
    start, end = wrap.sigma_to_t(wrap.sigma_max.clone()), wrap.sigma_to_t(wrap.sigma_min.clone())
    sigmas = [float(wrap.t_to_sigma(t)) for t in torch.linspace(float(start), float(end), n)]
    return torch.FloatTensor([*sigmas, 0.0]).to(devices.device)


def sample_euler(model, x, sigmas, extra_args, callback, noise):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        callback(i)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_euler_ancestral(model, x, sigmas, extra_args, callback, noise):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        callback(i)
        s_from, s_to = sigmas[i], sigmas[i + 1]
        sigma_up = min(s_to, (s_to**2 * (s_from**2 - s_to**2) / s_from**2) ** 0.5)
        sigma_down = (s_to**2 - sigma_up**2) ** 0.5
        d = (x - denoised) / s_from
        x = x + d * (sigma_down - s_from)
        if s_to > 0:
            x = x + noise() * sigma_up
    return x


def sample_lcm(model, x, sigmas, extra_args, callback, noise):
    """k-diffusion's sample_lcm: jump to the prediction, re-noise to the next level."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * s_in, **extra_args)
        callback(i)
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise()
    return x


def sample_dpmpp_2m(model, x, sigmas, extra_args, callback, noise):
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        callback(i)
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log() if sigmas[i + 1] > 0 else math.inf
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * denoised if sigmas[i + 1] > 0 else denoised
        else:
            h_last = t - (-sigmas[i - 1].log())
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * denoised_d
        old_denoised = denoised
    return x


FUNCTIONS = {
    "Euler": (sample_euler, False),
    "Euler a": (sample_euler_ancestral, False),
    "DPM++ 2M": (sample_dpmpp_2m, True),
    "LCM": (sample_lcm, False),
}


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, name, sd_model):
        super().__init__(name)
        self.func, self.karras = FUNCTIONS[name]
        if name == "LCM":
            from modules.sd_samplers_lcm import CFGDenoiserLCM

            self.model_wrap_cfg = CFGDenoiserLCM(self)
        else:
            self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p, steps):
        wrap = self.model_wrap
        scheduler = getattr(p, "hr_scheduler" if getattr(p, "is_hr_pass", False) else "scheduler", None)
        if flavour.neo() and scheduler in (None, "Automatic"):
            legacy = p.sd_model.is_webui_legacy_model()  # Neo picks the Automatic schedule by the model's kind
        else:  # Forge main's flow families: the stand-in gives them Normal too
            legacy = not hasattr(p.sd_model, "is_webui_legacy_model") or p.sd_model.is_webui_legacy_model()
        if not legacy:
            return normal_sigmas(steps, wrap)  # "Normal" for the families that are not SD1 or SDXL
        if self.karras:
            return karras_sigmas(steps, float(wrap.sigma_min), float(wrap.sigma_max))
        t = torch.linspace(999, 0, steps, device=wrap.log_sigmas.device)
        return torch.cat([wrap.t_to_sigma(t), t.new_zeros(1)])

    def _run(self, p, x, sigmas, cond, uncond, image_conditioning, steps):
        self.setup_denoiser(p, steps)
        extra = self.extra_args(p, cond, uncond, image_conditioning)
        if hasattr(shared.sd_model, "forge_objects"):  # Forge places the models for the sampling
            sampling_function.sampling_prepare(shared.sd_model.forge_objects.unet, x)
        # The host routes k-diffusion's randn_like to p.rng (TorchHijack): per-image seeded noise.
        return self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, sigmas, extra, self.callback_state, p.rng.next))

    def noised(self, sigma, noise, latent):
        """The first latent: Forge's predictor noises it (a flow's ``sigma noise + (1 - sigma) x0``)."""
        if isinstance(self.model_wrap, ForgeScheduleLinker):
            return self.model_wrap.predictor.noise_scaling(sigma, noise, latent)
        return latent + noise * sigma

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        x = self.noised(sigmas[:1], x, torch.zeros_like(x))
        return self._run(p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning, steps)

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        t_enc = max(1, int(p.denoising_strength * steps))
        sigmas = self.get_sigmas(p, steps)[steps - t_enc - 1 :]
        x = self.noised(sigmas[:1], noise, x)
        return self._run(p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning, t_enc)
