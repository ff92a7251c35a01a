"""The host's LCM denoiser (``sd_samplers_lcm.py``): a k-diffusion denoiser whose constructor
takes the model alone, snaps timesteps to LCM's 50-step grid, and scales its output with LCM's
boundary condition (``c_skip``, ``c_out``)."""

from k_diffusion.external import CompVisDenoiser

from modules import sd_samplers_cfg_denoiser, shared

SKIP = 20
"""1000 training timesteps over LCM's 50 original ones."""


class LCMCompVisDenoiser(CompVisDenoiser):
    def __init__(self, model):
        super().__init__(model)
        self.sigmas = self.sigmas.to(model.device)

    def sigma_to_t(self, sigma, quantize=None):
        dists = sigma.log() - self.log_sigmas[SKIP - 1 :: SKIP, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * SKIP + (SKIP - 1)

    def forward(self, input, sigma, **kwargs):
        x0 = super().forward(input, sigma, **kwargs)
        scaled = self.sigma_to_t(sigma)[:, None, None, None] * 10.0
        c_skip = 0.25 / (scaled**2 + 0.25)
        c_out = scaled / (scaled**2 + 0.25) ** 0.5
        return c_out * x0 + c_skip * input


class CFGDenoiserLCM(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = LCMCompVisDenoiser(shared.sd_model)
        return self.model_wrap
