import torch

from modules import shared


class InterruptedException(BaseException):
    pass


def apply_refiner(cfg_denoiser, sigma=None):
    return False


def images_tensor_to_samples(image, approximation=None, model=None):
    """image[0, 1] -> latent, one image at a time like the host's full VAE path."""
    model = model or shared.sd_model
    image = image * 2 - 1
    return torch.cat([model.get_first_stage_encoding(model.encode_first_stage(img[None])) for img in image])


def store_latent(decoded):
    shared.state.current_latent = decoded


class Sampler:
    def __init__(self, funcname):
        self.funcname = funcname
        self.func = funcname
        self.last_latent = None
        self.sampler_extra_args = None
        self.config = None

    def launch_sampling(self, steps, func):
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def callback_state(self, i):
        shared.state.sampling_step = i
        hook = getattr(shared.state, "on_step", None)
        if hook is not None:
            hook(i)

    def setup_denoiser(self, p, steps):
        """What the host's sample/launch_sampling set; ``total_steps`` is the user's steps (the
        sampler config's count), even where DDIM makes one call fewer."""
        d = self.model_wrap_cfg
        d.p = p
        d.steps = steps
        d.total_steps = steps
        d.step = 0
        d.mask = getattr(p, "mask", None)
        d.nmask = getattr(p, "nmask", None)
        d.init_latent = getattr(p, "init_latent", None)

    def extra_args(self, p, cond, uncond, image_cond):
        self.sampler_extra_args = {
            "cond": cond,
            "image_cond": image_cond,
            "uncond": uncond,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": getattr(p, "s_min_uncond", 0.0),
        }
        return self.sampler_extra_args
