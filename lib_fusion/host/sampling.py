"""What every host family does around its sampling hook: the ``p.sample`` wrapper (model
loading, the step callback, cleanup in ``finally``, the comparison's extra samplings) and
each model's text conditioning for a pass (prompt editing, ``AND``, the fusion prompts).

The host swallows exceptions raised in script hooks and callbacks, so everything that can
fail runs inside the sampling call path: in the wrapper around ``p.sample`` (arguments,
model loading) or in the family's model hook (prompt encoding, the model passes). Hooks
live only while ``p.sample`` runs and are removed in its ``finally``: errors and
interrupts included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
from modules import script_callbacks, shared

from lib_fusion.arguments.args import TITLE, FusionArgumentError
from lib_fusion.arguments.infotext import strides_used
from lib_fusion.engine.fused_steps import never_fused
from lib_fusion.engine.run import FusionRun
from lib_fusion.engine.sampling_pass import ACTIVE, FUSED, FUSION, HostStep
from lib_fusion.fusion.denoise import Conditioning
from lib_fusion.host.images import RUN_ATTRIBUTE, finished_images, image_index
from lib_fusion.host.loading import HELD_ATTRIBUTE, Family, Held, load_generation_models, unload
from lib_fusion.host.probe import call_with_accepted, host_module
from lib_fusion.host.settings import max_models, release
from lib_fusion.methods import method_of

_WRAPPED_MARK = "__model_fusion_wrapper__"
ConditioningFn = Callable[[HostStep], Conditioning]


def wrap_sample(p: Any, run: FusionRun, family: Family) -> None:
    """Wrap ``p.sample`` for this generation; what the host holds for it goes on ``p`` too
    (:class:`~lib_fusion.host.loading.Held`)."""
    original = p.sample
    held = Held(callback=functools.partial(_on_cfg_denoiser, run, family.PER_IMAGE_STEPS))

    @functools.wraps(original)
    def sample(*args: Any, **kwargs: Any) -> Any:
        try:
            return _sample(run, held, family, p, original, *args, **kwargs)
        except BaseException:
            # The generation ends here and postprocess will not run: let go of p and the models now.
            unwrap_sample(p)
            release(run, held)
            raise

    setattr(sample, _WRAPPED_MARK, original)
    setattr(p, HELD_ATTRIBUTE, held)
    p.sample = sample


def _sample(run: FusionRun, held: Held, family: Family, p: Any, original: Callable, *args: Any, **kwargs: Any) -> Any:
    """One ``p.sample`` call (a batch) with the fusion hooks in place, and only then; with
    the comparison, the same batch again with each model alone."""
    if run.error is not None:
        raise run.error
    titles = [info.title for info in run.plan.checkpoints]
    if titles:  # a load takes seconds: say which checkpoints this generation holds besides the active one
        show_progress(f"checkpoints {', '.join(titles)}")
    load_generation_models(run, held, family, max_models())
    held.patched = []
    run.batch = int(getattr(p, "iteration", 0))
    same_noise = noise_replay(p)
    script_callbacks.on_cfg_denoiser(held.callback, name="model_fusion")
    try:
        with family.sampling_residency(held.fusion):
            result = original(*args, **kwargs)
            check_every_pass_fused(run)
            check_every_checkpoint_fused(run)
            p.extra_generation_params.update(strides_used(run.strides_used))
            sample_alone(run, p, same_noise, functools.partial(original, *args, **kwargs))
    except torch.cuda.OutOfMemoryError as error:  # torch.OutOfMemoryError from torch 2.5 on; the WebUI pins 2.1
        raise _out_of_memory(error) from error
    finally:
        run.variant = FUSED
        script_callbacks.remove_callbacks_for_function(held.callback)
        family.end_sampling(held)
        held.patched = []
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


def hookable_run(p: Any) -> tuple[FusionRun, Held] | None:
    """``process_before_every_sampling``: the generation's run and what the host holds for it
    when its sampling hook is due (fusion on, no error so far, inside the ``p.sample``
    wrapper), else None."""
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    held: Held | None = getattr(p, HELD_ATTRIBUTE, None)
    if run is None or held is None or run.error is not None or held.patched is None:
        return None
    return run, held


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


def check_every_checkpoint_fused(run: FusionRun) -> None:
    """No fusion that does nothing wears the label: a batch in which no step fused (a window
    the pass never reached: img2img or hires at a low strength), or a further checkpoint
    joined none, is an error naming why and what would fuse; the image is not kept."""
    if shared.state.interrupted or shared.state.skipped:
        return
    reason = never_fused(run.args, run.stats)
    if reason is not None:
        raise FusionArgumentError(reason)


def _on_cfg_denoiser(run: FusionRun, per_image: bool, params: Any) -> None:
    try:
        denoiser = params.denoiser
        extra = denoiser.sampler.sampler_extra_args
        conds_list, _ = host_module("modules.prompt_parser").reconstruct_multicond_batch(extra["cond"], denoiser.step)
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
                per_image=per_image,
            )
        )
    except Exception as error:  # the host would only log it; the next model call raises it
        run.error = error


@dataclass
class PassConditionings:
    """Each model's conditioning of one pass, encoded on the first step that needs it."""

    active: ConditioningFn
    fusion: ConditioningFn
    active_uses_host_conds: bool
    """The active model's conditioning is the host's own: its solo steps can pass through."""
    more: list[ConditioningFn]
    """SNB's further fusion checkpoints, in order (their prompts through A's encoder, or with
    ``own`` each its own)."""
    regions: list[dict[str, ConditioningFn]]
    """Per foreground region: its conditioning for each model (:data:`ACTIVE`, :data:`FUSION`,
    and the title of a checkpoint of its own)."""
    background: dict[str, ConditioningFn]
    """The main prompt's conditioning for each checkpoint regions name (by title): the
    background may be denoised by one of them."""


def pass_conditionings(
    p: Any,
    run: FusionRun,
    active_encoder: Any,
    fusion_encoder: Any | None,
    region_encoders: dict[str, Any] | None = None,
    more_encoders: list[Any] | None = None,
) -> PassConditionings:
    """The prompts each model reads in this pass, and which text encoder reads them: with
    ``text_encoder='solo'`` the solo model's encoder reads both (the official code), with
    ``own`` each its own. ``fusion_encoder`` None: the fusion checkpoint has none loaded;
    ``region_encoders``: the encoders of the checkpoints regions name, by title;
    ``more_encoders``: those of SNB's further fusion checkpoints, in order."""
    args = run.args
    hires = bool(getattr(p, "is_hr_pass", False))
    main_prompts = list(p.hr_prompts if hires else p.prompts)
    main_negatives = list(p.hr_negative_prompts if hires else p.negative_prompts)
    fusion_encoder = active_encoder if fusion_encoder is None else fusion_encoder
    method = method_of(args)
    solo_active = args.solo == "active" or not method.two_model  # Regions: the background is the active model
    own = args.text_encoder == "own"
    encoder_of_active = active_encoder if (own or solo_active) else fusion_encoder
    encoder_of_fusion = fusion_encoder if (own or not solo_active) else active_encoder
    steps = _schedule_steps(p, hires)

    def prompts_of(prompt: str, negative_prompt: str) -> tuple[list[str], list[str]]:
        """A model's own prompts for every image of the batch; an empty one means the main one."""
        prompts = [strip_networks(prompt)] * len(main_prompts) if prompt else main_prompts
        return prompts, [strip_networks(negative_prompt)] * len(main_negatives) if negative_prompt else main_negatives

    def own_or_active(encoder: Any | None) -> Any:
        """With ``own`` a checkpoint's own encoder (when loaded), otherwise the active one's."""
        return encoder if own and encoder is not None else active_encoder

    def host_conditioning(step: HostStep) -> Conditioning:
        if step.text_uncond is None:  # Forge encodes no negative prompt at CFG 1; saliency still needs it
            return main_encoded(step)
        return Conditioning(step.conds_list, step.text_cond, step.text_uncond)

    def encoded(encoder: Any, prompts: list[str], negatives: list[str], host_ok: bool = True) -> ConditioningFn:
        if host_ok and encoder is active_encoder and prompts == main_prompts and negatives == main_negatives:
            return host_conditioning
        cache: dict[str, Any] = {}
        made: dict[tuple[int, ...], Conditioning] = {}

        def conditioning(step: HostStep) -> Conditioning:
            if not cache:  # once per pass, at the first step that needs it
                cache.update(_encode(p, encoder, prompts, negatives, steps))
            key = _schedule_entries(cache, step.index)
            if key not in made:  # a new prompt-editing segment: rebuild the batch (once per segment, not per step)
                prompt_parser = host_module("modules.prompt_parser")
                conds_list, cond = prompt_parser.reconstruct_multicond_batch(cache["c"], step.index)
                made.clear()
                made[key] = Conditioning(conds_list, cond, prompt_parser.reconstruct_cond_batch(cache["uc"], step.index))
            return made[key]

        return conditioning

    main_encoded = encoded(active_encoder, main_prompts, main_negatives, host_ok=False)
    active = encoded(encoder_of_active, main_prompts, main_negatives)
    regions = []
    region_encoders = region_encoders or {}
    # The main prompt for the checkpoints regions name: the background may take one.
    background = {title: encoded(own_or_active(encoder), main_prompts, main_negatives) for title, encoder in region_encoders.items()}
    if method.lays_out_regions:
        for region in args.regions:
            prompts, negatives = prompts_of(region.prompt, region.negative_prompt)
            conditionings = {ACTIVE: encoded(encoder_of_active, prompts, negatives), FUSION: encoded(encoder_of_fusion, prompts, negatives)}
            if region.model in region_encoders:  # a checkpoint of its own
                conditionings[region.model] = encoded(own_or_active(region_encoders[region.model]), prompts, negatives)
            regions.append(conditionings)
    more = [
        encoded(own_or_active(encoder), *prompts_of(entry.prompt, entry.negative_prompt))
        for entry, encoder in zip(args.models, more_encoders or [None] * len(args.models))
    ]
    # Regions: the fusion checkpoint's main conditioning is the main prompt's.
    fusion_prompts = prompts_of(args.prompt, args.negative_prompt) if method.two_model else (main_prompts, main_negatives)
    return PassConditionings(
        active=active,
        fusion=encoded(encoder_of_fusion, *fusion_prompts),
        active_uses_host_conds=active is host_conditioning,
        regions=regions,
        background=background,
        more=more,
    )


def show_progress(text: str) -> None:
    """The WebUI shows ``state.textinfo`` under the progress bar (and in /sdapi/v1/progress)."""
    shared.state.textinfo = f"{TITLE}: {text}"


BOOTSTRAP_COLOURS = 20
"""Constant-colour backgrounds to draw from (the official default count)."""


def bootstrap_colours() -> torch.Tensor:
    """(K, C) latents of random constant-colour images through the active VAE (official
    ``region_based.py``). A 64-pixel square per colour is enough for a constant latent."""
    sd_samplers_common = host_module("modules.sd_samplers_common", "to draw Regions' bootstrapping backgrounds")
    devices = host_module("modules.devices")
    rgb = torch.rand(BOOTSTRAP_COLOURS, 3, generator=torch.Generator().manual_seed(0))
    images = rgb[:, :, None, None].expand(-1, -1, 64, 64).contiguous()
    with torch.no_grad(), devices.without_autocast():  # the VAE in its own dtype (--no-half-vae), as the WebUI encodes
        latents = sd_samplers_common.images_tensor_to_samples(images, model=shared.sd_model)
    return latents.float().mean(dim=(2, 3))


def strip_networks(prompt: str) -> str:
    """Extra-network tags (``<lora:...>``) act on the active model only; drop them from the fusion prompt."""
    prompts, _ = host_module("modules.extra_networks").parse_prompts([prompt])
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
    old = {"use_old_scheduling": bool(getattr(shared.opts, "use_old_scheduling", False))}  # Neo's parser has no such option
    prompt_parser, devices = host_module("modules.prompt_parser"), host_module("modules.devices")
    # As the host makes its own: the hires pass at its target size (SDXL's size conditioning) and, for Forge's
    # Flux, with the pass's Distilled CFG Scale, which the engine reads from the prompts.
    hires = hires_steps is not None
    kind = {
        "width": getattr(p, "hr_upscale_to_x", p.width) if hires else p.width,
        "height": getattr(p, "hr_upscale_to_y", p.height) if hires else p.height,
        "distilled_cfg_scale": getattr(p, "hr_distilled_cfg" if hires else "distilled_cfg_scale", None),
    }
    positive = call_with_accepted(prompt_parser.SdConditioning, prompts, **kind)
    negative = call_with_accepted(prompt_parser.SdConditioning, negatives, is_negative_prompt=True, **kind)
    with devices.autocast(), torch.no_grad():
        return {
            "c": call_with_accepted(prompt_parser.get_multicond_learned_conditioning, encoder, positive, first, hires_steps, **old),
            "uc": call_with_accepted(prompt_parser.get_learned_conditioning, encoder, negative, first, hires_steps, **old),
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
