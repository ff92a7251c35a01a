"""process_images with the host's hook order and sampling passes (txt2img + hires, img2img)."""

import flavour
import numpy as np
import torch
from PIL import Image

from modules import devices, extra_networks, images, infotext_utils, prompt_parser, scripts, sd_samplers, shared


class ImageRNG:
    """``modules.rng.ImageRNG``: one generator per image seed (subseeds are not modelled)."""

    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape = tuple(shape)
        self.seeds, self.subseeds, self.subseed_strength = seeds, subseeds, subseed_strength
        self.seed_resize_from_h, self.seed_resize_from_w = seed_resize_from_h, seed_resize_from_w
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(devices.device)


def forge_reset(p):
    """Forge: a fresh shallow copy of the model's parts before every pass's hooks."""
    if hasattr(p.sd_model, "forge_objects"):
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()


class DecodedSamples(list):
    already_decoded = True


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    samples = DecodedSamples()
    for i in range(batch.shape[0]):
        samples.append(model.decode_first_stage(batch[i : i + 1])[0].to(target_device or batch.device))
    return samples


class StableDiffusionProcessing:
    def __init__(
        self,
        prompt="",
        negative_prompt="",
        seed=1,
        steps=4,
        cfg_scale=7.0,
        width=64,
        height=64,
        batch_size=1,
        n_iter=1,
        sampler_name="Euler",
        scripts=None,
        script_args=(),
        s_min_uncond=0.0,
        refiner_checkpoint=None,
        denoising_strength=0.75,
        distilled_cfg_scale=3.5,
    ):
        self.prompt, self.negative_prompt, self.seed, self.steps = prompt, negative_prompt, seed, steps
        self.cfg_scale, self.width, self.height = cfg_scale, width, height
        self.batch_size, self.n_iter, self.sampler_name = batch_size, n_iter, sampler_name
        self.scripts, self.script_args = scripts, tuple(script_args)
        self.s_min_uncond, self.refiner_checkpoint, self.denoising_strength = s_min_uncond, refiner_checkpoint, denoising_strength
        self.extra_generation_params = {}
        self.sd_model = None
        self.sampler = None
        self.is_hr_pass = False
        self.subseed_strength, self.seed_resize_from_h, self.seed_resize_from_w = 0.0, 0, 0
        self.do_not_save_samples, self.do_not_save_grid = False, False
        self.outpath_samples, self.outpath_grids = "outputs/samples", "outputs/grids"
        self.color_corrections = None
        if flavour.HOST != "a1111":
            self.distilled_cfg_scale = distilled_cfg_scale
            """Forge's and Neo's Distilled CFG Scale (Flux dev's guidance; Neo's shift for some families)."""

    def save_samples(self):
        return shared.opts.samples_save and not self.do_not_save_samples

    def latent_shape(self, width=None, height=None):
        """Neo: the VAE's ``latent_channels`` (16 for the flow families)."""
        forge_objects = getattr(shared.sd_model, "forge_objects", None)
        channels = forge_objects.vae.latent_channels if forge_objects is not None else 4
        return (channels, (height or self.height) // 8, (width or self.width) // 8)

    def make_rng(self, shape):
        """The host's ``ImageRNG``: one generator per image seed, for the first noise and the
        ancestral samplers' noise alike, so image i never depends on the batch around it."""
        self.rng = ImageRNG(shape, self.seeds, subseeds=self.subseeds, subseed_strength=self.subseed_strength)
        return self.rng

    def setup_conds(self):
        config = sd_samplers.find_sampler_config(self.sampler_name)
        total = config.total_steps(self.steps)
        self.step_multiplier = total // self.steps
        self.firstpass_steps = total
        distilled = {"distilled_cfg_scale": self.distilled_cfg_scale} if flavour.HOST != "a1111" else {}
        negatives = prompt_parser.SdConditioning(
            self.negative_prompts, width=self.width, height=self.height, is_negative_prompt=True, **distilled
        )
        prompts = prompt_parser.SdConditioning(self.prompts, width=self.width, height=self.height, **distilled)
        self.uc = prompt_parser.get_learned_conditioning(shared.sd_model, negatives, total)
        if hasattr(shared.sd_model, "forge_objects") and self.cfg_scale == 1:
            self.uc = None  # Forge: "Skipping unconditional conditioning when CFG = 1"
        self.c = prompt_parser.get_multicond_learned_conditioning(shared.sd_model, prompts, total)

    def txt2img_image_conditioning(self, x):
        return x.new_zeros(x.shape[0], 5, 1, 1)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, enable_hr=False, hr_scale=2.0, hr_second_pass_steps=0, hr_cfg=1.0, **kwargs):
        super().__init__(**kwargs)
        self.enable_hr, self.hr_scale, self.hr_second_pass_steps = enable_hr, hr_scale, hr_second_pass_steps
        if flavour.HOST != "a1111":  # AUTOMATIC1111's hires pass samples at the first pass's CFG scale
            self.hr_cfg = hr_cfg
            """Forge's hires CFG scale (its API's default 1: no negative prompt in the hires pass)."""

    def init(self):
        pass

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        forge_reset(self)
        self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample(
            self, x, conditioning, unconditional_conditioning, image_conditioning=self.txt2img_image_conditioning(x)
        )
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples)

    def sample_hr_pass(self, samples):
        self.is_hr_pass = True
        width, height = int(self.width * self.hr_scale), int(self.height * self.hr_scale)
        samples = torch.nn.functional.interpolate(samples, size=(height // 8, width // 8), mode="nearest")
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        self.hr_prompts, self.hr_negative_prompts = self.prompts, self.negative_prompts
        self.hr_c, self.hr_uc = self.c, self.uc
        if hasattr(self.sd_model, "forge_objects") and self.hr_cfg == 1:
            self.hr_uc = None
        noise = self.make_rng(self.latent_shape(width, height)).next()
        self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        if hasattr(self.sd_model, "forge_objects"):  # Forge: the hooks again on fresh parts; only these sample
            forge_reset(self)
            self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        steps = self.hr_second_pass_steps or self.steps
        samples = self.sampler.sample_img2img(
            self, samples, noise, self.hr_c, self.hr_uc, steps=steps, image_conditioning=self.txt2img_image_conditioning(samples)
        )
        self.sampler = None
        self.is_hr_pass = False
        return samples


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, init_latent=None, mask=None, **kwargs):
        super().__init__(**kwargs)
        self.init_latent_source = init_latent
        self.mask_source = mask

    def init(self):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        source = self.init_latent_source.to(devices.device)
        self.init_latent = source.expand(self.batch_size, *source.shape[1:]).clone()
        if self.mask_source is not None:
            self.mask = 1 - self.mask_source.to(devices.device)  # keep the original where the user did not paint
            self.nmask = self.mask_source.to(devices.device)
        else:
            self.mask = self.nmask = None

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        forge_reset(self)
        self.scripts.process_before_every_sampling(self, x=self.init_latent, noise=x, c=conditioning, uc=unconditional_conditioning)
        return self.sampler.sample_img2img(
            self, self.init_latent, x, conditioning, unconditional_conditioning, image_conditioning=self.txt2img_image_conditioning(x)
        )


class Processed:
    def __init__(self, p, images, infotexts, latents):
        self.images = images
        self.infotexts = infotexts
        self.comments = ""
        self.extra_generation_params = p.extra_generation_params
        self.latents = latents
        """The stand-in's own: the sampled latent of each image, for exact comparisons in tests."""


def create_infotext(
    p,
    all_prompts,
    all_seeds,
    all_subseeds,
    comments=None,
    iteration=0,
    position_in_batch=0,
    use_main_prompt=False,
    index=None,
    all_negative_prompts=None,
):
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    params = {"Steps": p.steps, "Sampler": p.sampler_name, "CFG scale": p.cfg_scale, "Seed": all_seeds[index], **p.extra_generation_params}
    line = ", ".join(f"{k}: {infotext_utils.quote(v)}" for k, v in params.items() if v is not None)
    prompt = p.prompt if use_main_prompt else all_prompts[index]
    return f"{prompt}\nNegative prompt: {(all_negative_prompts or p.all_negative_prompts)[index]}\n{line}"


def process_images(p):
    """The hook order of process_images_inner; an exception from p.sample fails the generation."""
    p.sd_model = shared.sd_model
    shared.state.reset()
    total = p.batch_size * p.n_iter
    shared.state.job_count = p.n_iter * (2 if getattr(p, "enable_hr", False) else 1)
    p.all_prompts = [p.prompt] * total if isinstance(p.prompt, str) else list(p.prompt)
    p.all_negative_prompts = [p.negative_prompt] * total
    p.all_seeds = [p.seed + i for i in range(total)]
    p.all_subseeds = list(p.all_seeds)
    p.scripts.process(p)
    output, infotexts, latents = [], [], []
    for n in range(p.n_iter):
        if shared.state.skipped:
            shared.state.skipped = False
        if shared.state.interrupted:
            break
        p.iteration = n
        batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
        p.prompts, _ = extra_networks.parse_prompts(p.all_prompts[batch])
        p.negative_prompts = p.all_negative_prompts[batch]
        p.seeds, p.subseeds = p.all_seeds[batch], p.all_subseeds[batch]
        if hasattr(p.sd_model, "forge_objects"):  # Forge: every batch starts from the model's own parts
            p.sd_model.forge_objects = p.sd_model.forge_objects_original.shallow_copy()
            p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        p.init()
        p.make_rng(p.latent_shape())
        p.setup_conds()
        samples = p.sample(
            conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds, subseeds=p.subseeds, subseed_strength=0, prompts=p.prompts
        )
        latents.extend(samples[i].cpu() for i in range(samples.shape[0]))
        decoded = decode_latent_batch(p.sd_model, samples, target_device=devices.cpu, check_for_nans=True)
        pixels = torch.clamp((torch.stack(decoded).float() + 1.0) / 2.0, min=0.0, max=1.0)
        shared.state.nextjob()
        for i, x_sample in enumerate(pixels):
            p.batch_index = i
            pp = scripts.PostprocessImageArgs(Image.fromarray((255.0 * np.moveaxis(x_sample.numpy(), 0, 2)).astype(np.uint8)))
            p.scripts.postprocess_image_after_composite(p, pp)
            text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=n * p.batch_size + i)
            if p.save_samples():
                images.save_image(pp.image, p.outpath_samples, "", p.seeds[i], p.prompts[i], shared.opts.samples_format, info=text, p=p)
            pp.image.info["parameters"] = text
            output.append(pp.image)
            infotexts.append(text)
    processed = Processed(p, output, infotexts, latents)
    p.scripts.postprocess(p, processed)
    return processed
