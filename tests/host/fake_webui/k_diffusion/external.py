"""k-diffusion's wrappers of a CompVis model (``k_diffusion/external.py``): each takes the noisy
latent at ``sigma`` and returns the denoised x0, converting what the UNet predicts (eps or v)
with the same scalings ``c_skip``, ``c_out``, ``c_in`` (Karras et al. 2022, table 1)."""

import torch


class CompVisDenoiser(torch.nn.Module):
    """eps-prediction model in sigma space: x0 = x - sigma * eps(x * c_in, t(sigma))."""

    def __init__(self, model, quantize=False, device="cpu"):
        super().__init__()
        self.inner_model = model
        self.quantize = quantize
        alphas = model.alphas_cumprod
        self.register_buffer("sigmas", ((1 - alphas) / alphas) ** 0.5)
        self.register_buffer("log_sigmas", self.sigmas.log())
        self.sigma_data = 1.0

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def sigma_to_t(self, sigma, quantize=None):
        """Piecewise-linear interpolation of the timestep in log-sigma."""
        log_sigma = sigma.log()
        above = (log_sigma[None, :] >= self.log_sigmas[:, None]).sum(dim=0) - 1
        low = above.clamp(0, self.log_sigmas.shape[0] - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return (low + w).view(sigma.shape)

    def t_to_sigma(self, t):
        low = t.floor().long().clamp(0, 998)
        w = t - low
        return (self.log_sigmas[low] * (1 - w) + self.log_sigmas[low + 1] * w).exp()

    def get_scalings(self, sigma):
        c_out = -sigma
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return torch.ones_like(sigma), c_out, c_in

    def forward(self, input, sigma, **kwargs):
        c_skip, c_out, c_in = (scale[:, None, None, None] for scale in self.get_scalings(sigma))
        return self.inner_model.apply_model(input * c_in, self.sigma_to_t(sigma), **kwargs) * c_out + input * c_skip


class CompVisVDenoiser(CompVisDenoiser):
    """v-prediction model (``DiscreteVDDPMDenoiser``): x0 = c_skip x + c_out v(x * c_in, t(sigma))."""

    def get_scalings(self, sigma):
        c_skip = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        c_out = -sigma * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_skip, c_out, c_in


class ForgeScheduleLinker(torch.nn.Module):
    """Forge's and Neo's k-diffusion wrapper (``modules_forge/packages/k_diffusion/external.py``):
    the active engine's predictor as k-diffusion's model; the sampler's CFG denoiser sets
    ``inner_model`` to the engine."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    @property
    def sigmas(self):
        return self.predictor.sigmas

    @property
    def log_sigmas(self):
        return self.predictor.sigmas.log()

    @property
    def sigma_min(self):
        return self.predictor.sigma_min

    @property
    def sigma_max(self):
        return self.predictor.sigma_max

    def sigma_to_t(self, sigma, quantize=None):
        return self.predictor.timestep(sigma)

    def t_to_sigma(self, t):
        return self.predictor.sigma(t)
