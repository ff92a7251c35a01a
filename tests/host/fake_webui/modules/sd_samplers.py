from types import SimpleNamespace

from modules import sd_samplers_kdiffusion, sd_samplers_timesteps

NAMES = ["Euler", "Euler a", "DPM++ 2M", "LCM", "DDIM", "UniPC"]


def find_sampler_config(name):
    return SimpleNamespace(name=name, total_steps=lambda steps: steps)


def create_sampler(name, model):
    if (name in sd_samplers_timesteps.NAMES or name == "LCM") and hasattr(model, "forge_objects"):
        raise NotImplementedError(f"the stand-in Forge models k-diffusion samplers only, not {name}")
    if name in sd_samplers_timesteps.NAMES:
        return sd_samplers_timesteps.CompVisSampler(name, model)
    return sd_samplers_kdiffusion.KDiffusionSampler(name, model)
