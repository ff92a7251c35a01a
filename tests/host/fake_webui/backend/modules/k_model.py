"""Forge's ``KModel``: the UNet behind a k-diffusion predictor. ``apply_model`` takes the
noisy latent at ``sigma`` and returns the denoised x0, whatever the UNet predicts; the
timestep the UNet sees is the predictor's (``Prediction.timestep``: the nearest of the
schedule's; a flow predictor's ``sigma * multiplier``)."""

import math

import torch


class Prediction(torch.nn.Module):
    """Forge's ``k_prediction`` predictors: "epsilon" and "v_prediction" (sigma_data 1), and
    "const", the flow-matching families' (Neo's ``PredictionFlux``, ``PredictionDiscreteFlow``)."""

    def __init__(self, alphas_cumprod, prediction_type="epsilon"):
        super().__init__()
        self.prediction_type = prediction_type
        self.sigma_data = 1.0
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.register_buffer("sigmas", sigmas.float())
        self.register_buffer("log_sigmas", sigmas.log().float())

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), min=0, max=(len(self.sigmas) - 1))
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp().to(timestep.device)

    def calculate_input(self, sigma, noise):
        if self.prediction_type == "const":  # flow matching: the latent as it is
            return noise
        return noise / (sigma.view(sigma.shape[:1] + (1,) * (noise.ndim - 1)) ** 2 + 1.0) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
        if self.prediction_type == "v_prediction":
            scale = sigma**2 + self.sigma_data**2
            return model_input * self.sigma_data**2 / scale - model_output * sigma * self.sigma_data / scale**0.5
        return model_input - model_output * sigma

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        if self.prediction_type == "const":  # flow matching (Neo's Flux, SD3 …): (1 - sigma) x0 + sigma noise
            return sigma * noise + (1.0 - sigma) * latent_image
        return noise * sigma + latent_image


class FlowPrediction(Prediction):
    """Neo's rectified-flow predictors ("const"): a table of noise levels at the times
    ``1/N … 1`` bent by the family's shift, SD3's (``PredictionDiscreteFlow``, ``shift t / (1 +
    (shift - 1) t)``, timesteps ``sigma * 1000``) or Flux's (``PredictionFlux``, exponential,
    timesteps ``sigma``)."""

    def __init__(self, shift, multiplier=1000.0, flux=False, timesteps=1000):
        torch.nn.Module.__init__(self)
        self.prediction_type, self.sigma_data = "const", None
        self.shift, self.multiplier, self.flux = shift, multiplier, flux
        self.register_buffer("sigmas", self.sigma((torch.arange(1, timesteps + 1, 1) / timesteps) * multiplier))

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        t = timestep / self.multiplier
        if self.flux:
            return math.exp(self.shift) / (math.exp(self.shift) + (1 / t - 1))
        return self.shift * t / (1 + (self.shift - 1) * t)


class KModel(torch.nn.Module):
    def __init__(self, model, alphas_cumprod, prediction_type="epsilon", predictor=None):
        super().__init__()
        self.diffusion_model = model
        self.predictor = predictor if predictor is not None else Prediction(alphas_cumprod, prediction_type)
        self.computation_dtype = next(model.parameters()).dtype
        self.calls = []
        """Rows of each ``apply_model`` call (the stand-in's own record, for the tests)."""

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006
        self.calls.append(x.shape[0])
        sigma = t
        xc = self.predictor.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat], dim=1)
        extra = {key: kwargs[key] for key in ("y", "guidance") if kwargs.get(key) is not None}
        out = self.diffusion_model(xc.to(self.computation_dtype), self.predictor.timestep(t).float(), context=c_crossattn, **extra)
        return self.predictor.calculate_denoised(sigma, out.float(), x)

    def memory_required(self, input_shape):
        return 0
