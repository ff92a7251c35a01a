"""How AUTOMATIC1111 1.10.x calls the fusion: the sampling hook.

The host swallows exceptions raised in script hooks and callbacks, so everything that can
fail runs inside the sampling call path: in a wrapper around ``p.sample`` (arguments, model
loading) or in the wrapped inner model of the sampler's ``CFGDenoiser`` (prompt encoding,
the model passes). Hooks live only while ``p.sample`` runs and are removed in its
``finally``: errors and interrupts included. ``on_cfg_denoiser`` shows the step's rows;
the inner model's call is where the passes run (docs/webui-host.md of the project).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import torch
from modules import devices, extra_networks, prompt_parser, script_callbacks, shared

from lib_fusion.args import TITLE
from lib_fusion.conds import Cond
from lib_fusion.denoise import Conditioning
from lib_fusion.host.checkpoints import native_window
from lib_fusion.host.images import RUN_ATTRIBUTE, finished_images, image_index
from lib_fusion.host.loading import (
    EncoderModel,
    FusionModel,
    UNetModel,
    load_fusion_model,
    needs_fusion_text_encoder,
    sampling_residency,
    unload,
)
from lib_fusion.host.settings import release
from lib_fusion.infotext import strides_used
from lib_fusion.methods import TWO_MODEL_METHODS
from lib_fusion.run import ACTIVE, FUSED, FUSION, FusionRun, HostStep, RegionSource, SamplingPass

_WRAPPED_MARK = "__model_fusion_wrapper__"


def wrap_sample(p: Any, run: FusionRun) -> None:
    original = p.sample

    @functools.wraps(original)
    def sample(*args: Any, **kwargs: Any) -> Any:
        try:
            return _sample(run, p, original, *args, **kwargs)
        except BaseException:
            # The generation ends here and postprocess will not run: let go of p and the models now.
            unwrap_sample(p)
            release(run)
            raise

    setattr(sample, _WRAPPED_MARK, original)
    run.callback = functools.partial(_on_cfg_denoiser, run)
    p.sample = sample


def _sample(run: FusionRun, p: Any, original: Callable, *args: Any, **kwargs: Any) -> Any:
    """One ``p.sample`` call (a batch) with the fusion hooks in place, and only then; with
    the comparison, the same batch again with each model alone."""
    if run.error is not None:
        raise run.error
    if run.model_info is not None:
        run.fusion_model = load_fusion_model(run.model_info, needs_fusion_text_encoder(run.args))
    patched: list[Any] = []
    run.patched = patched
    run.batch = int(getattr(p, "iteration", 0))
    same_noise = noise_replay(p)
    script_callbacks.on_cfg_denoiser(run.callback, name="model_fusion")
    try:
        with sampling_residency(run.fusion_model):
            result = original(*args, **kwargs)
            check_every_pass_fused(run)
            p.extra_generation_params.update(strides_used(run.strides_used))
            sample_alone(run, p, same_noise, functools.partial(original, *args, **kwargs))
    except torch.cuda.OutOfMemoryError as error:  # torch.OutOfMemoryError from torch 2.5 on; the WebUI pins 2.1
        raise _out_of_memory(error) from error
    finally:
        run.variant = FUSED
        script_callbacks.remove_callbacks_for_function(run.callback)
        for inner in patched:
            inner.__dict__.pop("forward", None)
        patched.clear()
    if run.error is not None:
        raise run.error
    return result


def _out_of_memory(error: torch.cuda.OutOfMemoryError) -> torch.cuda.OutOfMemoryError:
    """Free the fusion model so the next generation has the memory back, and say what helps."""
    unload()
    return torch.cuda.OutOfMemoryError(
        f"{TITLE}: out of memory while fusing ({error}). The fusion checkpoint was unloaded. Two UNets share the "
        "device during fusion: lower the image size, the batch size or (Regions) the view batch size, or start the "
        "WebUI with --medvram"
    )


def unwrap_sample(p: Any) -> None:
    original = getattr(p.__dict__.get("sample"), _WRAPPED_MARK, None)
    if original is not None:
        # A copy of p (X/Y/Z plot cells) carries the wrapper of its source: rebind to the class method.
        if getattr(original, "__func__", None) is getattr(type(p), "sample", None):
            del p.sample
        else:
            p.sample = original


def check_every_pass_fused(run: FusionRun) -> None:
    """Never silent: a pass whose denoiser ran but never reached our model hook (another
    extension swapped the sampler's inner model) produced an unfused image. A pass with no
    denoiser call at all (DDIM with one step makes none) has nothing to fuse."""
    if shared.state.interrupted or shared.state.skipped:
        return
    for sampling_pass in run.passes:
        if sampling_pass.steps_seen and sampling_pass.calls == 0:
            raise RuntimeError(
                f"{TITLE}: the sampler never called the fusion hook (another extension may replace the "
                "sampler's denoiser); the image would not be fused, so it was not kept"
            )


def begin_pass(p: Any) -> None:
    """``process_before_every_sampling``: hook the sampler of this pass. Errors go to the run."""
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is None or run.error is not None or run.patched is None:
        return
    try:
        denoiser = p.sampler.model_wrap_cfg
        inner = denoiser.inner_model
        original = inner.forward
        run.begin_pass(_sampling_pass(p, run, denoiser, inner, original))
        inner.forward = functools.partial(run.forward, original)
        run.patched.append(inner)
    except Exception as error:
        run.error = error


def _on_cfg_denoiser(run: FusionRun, params: Any) -> None:
    try:
        denoiser = params.denoiser
        extra = denoiser.sampler.sampler_extra_args
        conds_list, _ = prompt_parser.reconstruct_multicond_batch(extra["cond"], denoiser.step)
        run.begin_step(
            HostStep(
                x_in=params.x,
                sigma_in=params.sigma,
                image_cond_in=params.image_cond,
                text_cond=params.text_cond,
                text_uncond=params.text_uncond,
                conds_list=conds_list,
                index=denoiser.step,
                cfg_scale=float(extra["cond_scale"]) * float(getattr(denoiser, "cond_scale_miltiplier", 1.0)),
                total_steps=getattr(denoiser, "total_steps", None),
            )
        )
    except Exception as error:  # the host would only log it; the next model call raises it
        run.error = error


def _sampling_pass(p: Any, run: FusionRun, denoiser: Any, inner: Any, original: Callable) -> SamplingPass:
    args = run.args
    fusion = run.fusion_model or FusionModel("", None)  # None: no region uses the fusion checkpoint
    is_kdiffusion = hasattr(inner, "sigma_to_t")
    make_cond = _condition_dict_maker(denoiser)

    def call(model_forward: Callable) -> Callable:
        def fn(x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor) -> torch.Tensor:
            return model_forward(x, sigma, cond=make_cond(cond, image_cond))

        return fn

    fusion_forward = original if fusion.unet is None else _same_wrapper(inner, UNetModel(fusion.unet))

    hires = bool(getattr(p, "is_hr_pass", False))
    main_prompts = list(p.hr_prompts if hires else p.prompts)
    main_negatives = list(p.hr_negative_prompts if hires else p.negative_prompts)
    active_encoder = shared.sd_model
    fusion_encoder = EncoderModel(fusion.text_encoder) if fusion.text_encoder is not None else shared.sd_model
    solo_active = args.solo == "active" or args.method == "regions"  # Regions: the background is the active model
    own = args.text_encoder == "own"
    encoder_of_active = active_encoder if (own or solo_active) else fusion_encoder
    encoder_of_fusion = fusion_encoder if (own or not solo_active) else active_encoder
    two_models = args.method in TWO_MODEL_METHODS  # Regions: the fusion checkpoint's main conditioning is the main prompt's
    fusion_prompts = [_strip_networks(args.prompt)] * len(main_prompts) if two_models and args.prompt else main_prompts
    fusion_negatives = (
        [_strip_networks(args.negative_prompt)] * len(main_negatives) if two_models and args.negative_prompt else main_negatives
    )
    steps = _schedule_steps(p, hires)

    def host_conditioning(step: HostStep) -> Conditioning:
        return Conditioning(step.conds_list, step.text_cond, step.text_uncond)

    def encoded(encoder: Any, prompts: list[str], negatives: list[str]) -> Callable[[HostStep], Conditioning]:
        if encoder is active_encoder and prompts == main_prompts and negatives == main_negatives:
            return host_conditioning
        cache: dict[str, Any] = {}
        made: dict[tuple[int, ...], Conditioning] = {}

        def conditioning(step: HostStep) -> Conditioning:
            if not cache:  # once per pass, at the first step that needs it
                cache.update(_encode(p, encoder, prompts, negatives, steps))
            key = _schedule_entries(cache, step.index)
            if key not in made:  # a new prompt-editing segment: rebuild the batch (once per segment, not per step)
                conds_list, cond = prompt_parser.reconstruct_multicond_batch(cache["c"], step.index)
                made.clear()
                made[key] = Conditioning(conds_list, cond, prompt_parser.reconstruct_cond_batch(cache["uc"], step.index))
            return made[key]

        return conditioning

    active_conditioning = encoded(encoder_of_active, main_prompts, main_negatives)
    regions = None
    if args.method == "regions":
        conditionings = []
        for region in args.regions:
            prompts = [_strip_networks(region.prompt)] * len(main_prompts) if region.prompt else main_prompts
            negatives = [_strip_networks(region.negative_prompt)] * len(main_negatives) if region.negative_prompt else main_negatives
            conditionings.append(
                {ACTIVE: encoded(encoder_of_active, prompts, negatives), FUSION: encoded(encoder_of_fusion, prompts, negatives)}
            )
        regions = RegionSource(
            conditionings=conditionings,
            native_window=native_window(),
            noise_to=_noise_to(inner, is_kdiffusion),
            colours=_bootstrap_colours,
            seeds=list(p.seeds),
        )
    return SamplingPass(
        active_fn=call(original),
        fusion_fn=call(fusion_forward),
        active_conditioning=active_conditioning,
        fusion_conditioning=encoded(encoder_of_fusion, fusion_prompts, fusion_negatives),
        active_uses_host_conds=active_conditioning is host_conditioning,
        sigma_to_t=(lambda s: float(inner.sigma_to_t(s)[0])) if is_kdiffusion else (lambda s: float(s[0])),
        units="x0" if is_kdiffusion else "eps",
        max_rows=None if shared.opts.batch_cond_uncond else len(main_prompts),
        regions=regions,
        progress=_show_progress,
        hires=hires,
    )


def _show_progress(text: str) -> None:
    """The WebUI shows ``state.textinfo`` under the progress bar (and in /sdapi/v1/progress)."""
    shared.state.textinfo = f"{TITLE}: {text}"


def _same_wrapper(inner: Any, model: UNetModel) -> Any:
    """The sampler's own denoiser class (CompVis, V, LCM, timesteps …) around the fusion UNet,
    so both models see the same scalings; only some constructors take ``quantize``."""
    cls = type(inner)
    if "quantize" in inspect.signature(cls.__init__).parameters:
        return cls(model, quantize=getattr(inner, "quantize", False))
    return cls(model)


BOOTSTRAP_COLOURS = 20
"""Constant-colour backgrounds to draw from (the official default count)."""


def _bootstrap_colours() -> torch.Tensor:
    """(K, C) latents of random constant-colour images through the active VAE (official
    ``region_based.py``). A 64-pixel square per colour is enough for a constant latent."""
    from modules import sd_samplers_common

    rgb = torch.rand(BOOTSTRAP_COLOURS, 3, generator=torch.Generator().manual_seed(0))
    images = rgb[:, :, None, None].expand(-1, -1, 64, 64).contiguous()
    with torch.no_grad(), devices.without_autocast():  # the VAE in its own dtype (--no-half-vae), as the WebUI encodes
        latents = sd_samplers_common.images_tensor_to_samples(images, model=shared.sd_model)
    return latents.float().mean(dim=(2, 3))


def _noise_to(inner: Any, is_kdiffusion: bool) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Noise a clean latent to the sampler's current level: ``x0 + sigma n`` for k-diffusion,
    ``sqrt(a_t) x0 + sqrt(1 - a_t) n`` for the timestep samplers (DDIM, PLMS, UniPC)."""

    alphas_cumprod: dict[torch.device, torch.Tensor] = {}  # on the sampling device, copied once per pass

    def k_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x0 + noise * sigma.to(dtype=x0.dtype).view(-1, 1, 1, 1)

    def t_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x0.device not in alphas_cumprod:
            alphas_cumprod[x0.device] = shared.sd_model.alphas_cumprod.to(x0.device)
        alphas = alphas_cumprod[x0.device][t.long()].to(dtype=x0.dtype).view(-1, 1, 1, 1)
        return alphas.sqrt() * x0 + (1 - alphas).sqrt() * noise

    return k_noise if is_kdiffusion else t_noise


def _condition_dict_maker(denoiser: Any) -> Callable[[Cond, torch.Tensor], dict]:
    """The host's ``make_condition_dict`` (CFGDenoiser.forward) for this model."""
    if shared.sd_model.model.conditioning_key == "crossattn-adm":
        return lambda c, image_cond: {"c_crossattn": [c], "c_adm": image_cond}
    return lambda c, image_cond: {**c, "c_concat": [image_cond]} if isinstance(c, dict) else {"c_crossattn": [c], "c_concat": [image_cond]}


def _strip_networks(prompt: str) -> str:
    """Extra-network tags (``<lora:...>``) act on the active model only; drop them from the fusion prompt."""
    prompts, _ = extra_networks.parse_prompts([prompt])
    return prompts[0]


def _schedule_steps(p: Any, hires: bool) -> tuple[int, int | None]:
    """Steps for prompt-editing schedules, as the host computes them for this pass."""
    multiplier = getattr(p, "step_multiplier", 1) or 1
    first = getattr(p, "firstpass_steps", None) or p.steps * multiplier
    if not hires:
        return first, None
    return first, (getattr(p, "hr_second_pass_steps", 0) or p.steps) * multiplier


def _encode(p: Any, encoder: Any, prompts: list[str], negatives: list[str], steps: tuple[int, int | None]) -> dict:
    first, hires_steps = steps
    old = bool(getattr(shared.opts, "use_old_scheduling", False))
    positive = prompt_parser.SdConditioning(prompts, width=p.width, height=p.height)
    negative = prompt_parser.SdConditioning(negatives, width=p.width, height=p.height, is_negative_prompt=True)
    with devices.autocast(), torch.no_grad():
        return {
            "c": prompt_parser.get_multicond_learned_conditioning(encoder, positive, first, hires_steps, old),
            "uc": prompt_parser.get_learned_conditioning(encoder, negative, first, hires_steps, old),
        }


def _schedule_entries(cache: dict, step_index: int) -> tuple[int, ...]:
    """Which entry of every prompt's ``[from:to:when]`` schedule applies at this step, chosen
    as ``prompt_parser.reconstruct_*_batch`` choose: steps with the same entries have the
    same conditioning."""

    def entry(schedule: Any) -> int:
        return next((index for index, scheduled in enumerate(schedule) if step_index <= scheduled.end_at_step), 0)

    positives = [entry(prompt.schedules) for prompts in cache["c"].batch for prompt in prompts]
    return (*positives, -1, *(entry(schedule) for schedule in cache["uc"]))


def noise_replay(p: Any) -> Callable[[], Any]:
    """A fresh copy of the batch's ``p.rng`` as the WebUI made it (the sampling consumes it,
    and hires fix replaces it), so a comparison starts from the very same noise."""
    rng = p.rng
    return lambda: type(rng)(
        rng.shape,
        rng.seeds,
        subseeds=rng.subseeds,
        subseed_strength=rng.subseed_strength,
        seed_resize_from_h=rng.seed_resize_from_h,
        seed_resize_from_w=rng.seed_resize_from_w,
    )


def sample_alone(run: FusionRun, p: Any, same_noise: Callable[[], Any], sample: Callable[[], Any]) -> None:
    """Comparison: each model alone from the batch's own noise; finished like the WebUI
    finishes its images and kept per image index for ``postprocess``."""
    if not run.variants:
        return
    if shared.state.job_count > 0:  # keep the progress bar moving forward: one job per pass
        shared.state.job_count += len(run.variants) * (2 if getattr(p, "enable_hr", False) else 1)
    for variant in run.variants:
        if shared.state.interrupted or shared.state.skipped:
            return
        run.variant = variant
        p.rng = same_noise()
        shared.state.nextjob()
        samples = sample()
        check_every_pass_fused(run)
        if shared.state.interrupted or shared.state.skipped:
            return  # a part-sampled image is no comparison
        for index, image in enumerate(finished_images(p, samples)):
            run.alone[variant][image_index(p, index)] = image
