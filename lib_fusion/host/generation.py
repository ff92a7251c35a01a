"""One generation, from ``Script.process`` to ``Script.postprocess``: check what the
arguments alone cannot (image size, refiner, the checkpoint, masks against the image), write
the infotext, wrap ``p.sample``; at the end add the outputs and let go of the models."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import torch
from modules import shared

from lib_fusion.arguments import masks
from lib_fusion.arguments.args import TITLE, FusionArgs, FusionArgumentError
from lib_fusion.arguments.fields import INFOTEXT_KEYS
from lib_fusion.arguments.infotext import STRIDE_USED, to_infotext
from lib_fusion.arguments.messages import shown
from lib_fusion.arguments.region_args import KEYWORDS
from lib_fusion.arguments.schedule import is_fused
from lib_fusion.engine.fused_steps import window_missed
from lib_fusion.engine.plan import PassPlan, Plan
from lib_fusion.engine.region_pass import make_layout, windows_of
from lib_fusion.engine.run import FusionRun
from lib_fusion.host import a1111, forge
from lib_fusion.host.checkpoints import is_active_checkpoint, model_window, resolve_at, resolve_checkpoint
from lib_fusion.host.images import RUN_ATTRIBUTE, add_outputs
from lib_fusion.host.loading import HELD_ATTRIBUTE
from lib_fusion.host.probe import UNSUPPORTED_HOST, active_is_flow, host_module, model_loaded, runs_forge, unsupported_host
from lib_fusion.host.sampling import strip_networks, unwrap_sample, wrap_sample
from lib_fusion.host.schedules import step_timesteps
from lib_fusion.host.settings import max_models, preview_steps, release
from lib_fusion.methods import ACTIVE_ALONE, method_of

WRITTEN_KEYS = frozenset({*INFOTEXT_KEYS.values(), STRIDE_USED})


def start(p: Any, args: FusionArgs) -> FusionRun | None:
    """``Script.process``: validate, note the infotext, wrap ``p.sample``. Never raises."""
    unwrap_sample(p)
    _write_infotext(p, {})
    if not args.enabled or _active_alone(args):
        return None  # plain by definition: nothing loaded, no label
    try:
        plan = resolve(p, args)
    except Exception as error:  # reported by the p.sample wrapper, where the host does not swallow it
        return start_with_error(p, error, args)
    _write_infotext(p, to_infotext(plan.args, plan.fusion.title if plan.fusion is not None else None))
    run = FusionRun(plan)
    setattr(p, RUN_ATTRIBUTE, run)
    wrap_sample(p, run, family())
    return run


def resolve(p: Any, args: FusionArgs) -> Plan:
    """The generation's plan (:class:`~lib_fusion.engine.plan.Plan`), or the refusal of
    anything that can be refused before sampling: the host, the CFG scale, passes none of
    whose steps reach the window, each checkpoint through the WebUI's list, the masks against
    the image, the budget. The arguments are completed here (titles, canonical masks) and
    not after."""
    _check_host(p, args)
    passes = _planned_passes(p)
    _check_the_cfg_scale_lets_the_method_act(args, passes)
    _check_every_pass_has_an_uncond_branch(args, passes)
    _check_a_pass_reaches_the_window(args, passes)
    fusion = None
    if args.needs_fusion_checkpoint:
        fusion = resolve_checkpoint(args.model)
        _check_not_a_copy_of_the_active(p, args, fusion)
    more: list[Any] = []
    if args.models:
        args, more = _with_more_models(args, fusion)
    images: list[torch.Tensor | None] = []
    regions: dict[str, Any] = {}
    if method_of(args).lays_out_regions:
        images = _region_images(p, args)
        _check_the_background_shows(p, args, images)
        args, regions = _with_region_checkpoints(_with_canonical_masks(args, images), fusion)
    plan = Plan(args, fusion, tuple(more), MappingProxyType(regions), tuple(images), preview_steps(), tuple(passes))
    _check_budget(plan)
    return plan


def family() -> Any:
    """The module that hooks this host family's sampler (:mod:`.forge` or :mod:`.a1111`)."""
    return forge if runs_forge() else a1111


def begin_pass(p: Any) -> None:
    """``process_before_every_sampling``: the family's sampling hook for this pass."""
    family().begin_pass(p)


def _write_infotext(p: Any, entries: dict[str, Any]) -> None:
    """This generation's fusion keys in a dict of p's own: the X/Y/Z plot's cells share one
    dict through their shallow copies, and a cell must not inherit another cell's fusion."""
    kept = {key: value for key, value in p.extra_generation_params.items() if key not in WRITTEN_KEYS}
    p.extra_generation_params = {**kept, **entries}


def start_with_error(p: Any, error: Exception, args: FusionArgs | None = None) -> FusionRun:
    """Arguments that did not parse, or a plan refused: fail the generation from ``p.sample``."""
    unwrap_sample(p)
    run = FusionRun(Plan(args or FusionArgs()))
    run.error = error
    setattr(p, RUN_ATTRIBUTE, run)
    wrap_sample(p, run, family())
    return run


def _region_images(p: Any, args: FusionArgs) -> list[torch.Tensor | None]:
    """Each mask decoded, once per generation (None for boxes). Every header is checked first:
    the image's size, and all the masks' pixels together within the bound."""
    window, _ = windows_of(args, (p.height // 8, p.width // 8), model_window())  # the first pass's canvas; hires is laid out later
    _check_regions_change_the_image(args, p, window)
    with_masks = [(index, region.mask) for index, region in enumerate(args.regions) if region.mask is not None]
    for index, mask in with_masks:
        width, height = masks.size(mask)
        if (width, height) != (p.width, p.height):
            raise FusionArgumentError(
                f"{TITLE}: regions[{index}].mask is {width}x{height} but the image is {p.width}x{p.height}; give a mask of the image's size"
            )
    if len(with_masks) * p.width * p.height > masks.MAX_DECODED_PIXELS:
        raise FusionArgumentError(
            f"{TITLE}: {len(with_masks)} masks of {p.width}x{p.height} are more than {masks.MAX_DECODED_PIXELS:,} mask pixels "
            "in all; use boxes for some regions or a smaller image"
        )
    images: list[torch.Tensor | None] = [None] * len(args.regions)
    for index, mask in with_masks:
        try:
            images[index] = masks.decode_mask(mask, (p.width, p.height))
        except masks.MaskError as error:
            raise FusionArgumentError(f"{TITLE}: invalid argument: regions[{index}].mask: {error}") from None
        if not bool(images[index].any()):
            raise FusionArgumentError(f"{TITLE}: invalid argument: regions[{index}].mask: {masks.EMPTY}")
    return images


def _check_regions_change_the_image(args: FusionArgs, p: Any, window: int) -> None:
    """Refuse Regions settings that cannot change the image: no region on a canvas one window
    wide is one checkpoint denoising the whole image as the WebUI does, and ``circular`` on
    such a canvas has no window crossing the edge to wrap it."""
    if getattr(p, "enable_hr", False):
        return  # the hires pass's larger canvas may hold several windows
    one_window_wide = p.width // 8 <= window
    if not args.regions and one_window_wide and p.height // 8 <= window:
        raise FusionArgumentError(
            f"{TITLE}: Regions with no region on a {p.width}x{p.height} canvas (one window of {window * 8} px) is the background "
            "checkpoint alone, no fusion; add a region, or make the image wider or taller than the window for a panorama"
        )
    if args.circular and one_window_wide:
        raise FusionArgumentError(
            f"{TITLE}: circular wraps the left and right edges through windows that cross them, and a {p.width} px wide image is "
            f"one window ({window * 8} px) wide: nothing would wrap; make the image wider than the window, or choose a smaller window"
        )


def _check_the_background_shows(p: Any, args: FusionArgs, images: list[torch.Tensor | None]) -> None:
    """Refuse a background on a checkpoint of its own when the regions cover the whole image:
    that checkpoint would be loaded and never run."""
    if args.background == "active" or not args.regions:
        return
    layout = make_layout(args, images, (p.height // 8, p.width // 8), model_window())
    if not bool(layout.masks[0].any()):
        raise FusionArgumentError(
            f"{TITLE}: background: the regions cover the whole {p.width}x{p.height} image, so the background's checkpoint "
            f"{shown(args.background)} would never run; set background to 'active', or leave part of the image to it"
        )


def _with_region_checkpoints(args: FusionArgs, fusion: Any) -> tuple[FusionArgs, dict[str, Any]]:
    """Each region's checkpoint and the background's resolved through the WebUI's list: the
    active one and the fusion checkpoint become their keywords, any other its title. Returns
    the arguments so written and those other checkpoints by title (loaded with the fusion
    checkpoint). A bad name fails naming where it was given."""
    infos: dict[str, Any] = {}

    def resolved(name: str, place: str) -> str:
        if name in KEYWORDS:
            return name
        info = resolve_at(name, place)
        if is_active_checkpoint(info):
            return "active"
        if fusion is not None and info.filename == fusion.filename:
            return "fusion"
        infos[info.title] = info
        return info.title

    background = resolved(args.background, "background")
    regions = []
    for index, region in enumerate(args.regions):
        name = resolved(region.model, f"regions[{index}].model")
        regions.append(region if name == region.model else region.copy(update={"model": name}))
    return args.copy(update={"regions": regions, "background": background}), infos


def _with_more_models(args: FusionArgs, fusion: Any) -> tuple[FusionArgs, list[Any]]:
    """SNB's further fusion checkpoints resolved through the WebUI's list: the arguments with
    their titles, and the checkpoints in order. Unknown ones, the active one and repeats fail
    naming the position as written."""
    infos: list[Any] = []
    seen = {fusion.filename: args.fusion_checkpoint_place()}
    models = []
    for index, entry in enumerate(args.models):
        place = f"{args.fusion_checkpoint_place(index)}.model"
        info = resolve_at(entry.model, place)
        if is_active_checkpoint(info):
            raise FusionArgumentError(f"{TITLE}: {place}: {info.title!r} is the active checkpoint, model A already; list other checkpoints")
        if info.filename in seen:
            raise FusionArgumentError(f"{TITLE}: {place}: {info.title!r} is listed twice (also as {seen[info.filename]}); list each once")
        seen[info.filename] = place
        infos.append(info)
        models.append(entry if entry.model == info.title else entry.copy(update={"model": info.title}))
    return args.copy(update={"models": models}), infos


def _check_budget(plan: Plan) -> None:
    """Refuse before sampling a generation that needs more checkpoints besides the active one
    than the Settings keep in memory (each step needs every one of them)."""
    needed = [info.title for info in plan.checkpoints if not is_active_checkpoint(info)]
    budget = max_models()
    if len(needed) > budget:
        raise FusionArgumentError(
            f"{TITLE}: this generation needs {len(needed)} checkpoints besides the active one ({', '.join(map(shown, needed))}) "
            f"but Settings → Model Fusion keeps at most {budget} in memory; raise that number or use fewer checkpoints"
        )


def _with_canonical_masks(args: FusionArgs, images: list[torch.Tensor | None]) -> FusionArgs:
    """The arguments with each mask as the 1-bit PNG it was read as (short infotext)."""
    regions = [
        region if image is None else region.copy(update={"mask": masks.encode_mask(image)}) for region, image in zip(args.regions, images)
    ]
    return args.copy(update={"regions": regions})


def _active_alone(args: FusionArgs) -> bool:
    """Settings under which every step is the active checkpoint's own call (mode 0, or
    guidance at w = 1, with A the active checkpoint): the generation is the host's own."""
    return method_of(args).alone_throughout(args) == ACTIVE_ALONE


def _check_a_pass_reaches_the_window(args: FusionArgs, passes: list[PassPlan]) -> None:
    """Refuse before anything loads a generation none of whose sampling passes has a step in
    the window: the steps each pass will take are the sampler's own (as the accordion's line
    counts them), an img2img's and a hires pass's starting part-way at their denoising
    strength. One step's timestep of margin (Forge's UNet sees the nearest whole one); a pass
    whose steps cannot be foreseen leaves it to the check after the first batch
    (:func:`.sampling.check_every_checkpoint_fused`)."""
    method = method_of(args)
    if not method.two_model or method.alone_throughout(args):  # one model on purpose (solo: "fusion", mode 0)
        return
    if any(planned.timesteps is None for planned in passes):
        return
    v1, mode = args.selection[0], args.mode
    timesteps = [t for planned in passes for t in planned.timesteps or ()]
    if timesteps and not any(is_fused(t + 1.0 if mode == 2 else t - 1.0, v1, mode) for t in timesteps):
        raise FusionArgumentError(window_missed(args, timesteps, " and ".join(planned.name for planned in passes)))


def _planned_passes(p: Any) -> list[PassPlan]:
    """Each sampling pass the generation will run: its CFG scale (Forge's hires pass samples
    at ``hr_cfg``, AUTOMATIC1111's at the first pass's) and the timestep of each step."""
    processing = host_module("modules.processing")
    sampler, scheduler, cfg_scale = p.sampler_name, getattr(p, "scheduler", None), float(p.cfg_scale)
    if isinstance(p, processing.StableDiffusionProcessingImg2Img):
        return [PassPlan("img2img", cfg_scale, _foreseen(sampler, scheduler, p.steps, p.denoising_strength))]
    passes = [PassPlan("txt2img", cfg_scale, _foreseen(sampler, scheduler, p.steps))]
    if getattr(p, "enable_hr", False):
        hr_sampler = getattr(p, "hr_sampler_name", None)
        hr_scheduler = getattr(p, "hr_scheduler", None)
        hr_sampler = sampler if hr_sampler in (None, "", "Use same sampler") else hr_sampler
        hr_scheduler = scheduler if hr_scheduler in (None, "", "Use same scheduler") else hr_scheduler
        hr_steps = getattr(p, "hr_second_pass_steps", 0) or p.steps
        hr_cfg = float(getattr(p, "hr_cfg", cfg_scale))
        passes.append(PassPlan("hires pass", hr_cfg, _foreseen(hr_sampler, hr_scheduler, hr_steps, p.denoising_strength)))
    return passes


def _foreseen(sampler: str, scheduler: str | None, steps: Any, strength: Any = None) -> tuple[float, ...] | None:
    timesteps = step_timesteps(sampler, scheduler, steps, strength)
    return None if timesteps is None else tuple(timesteps)


def _check_the_cfg_scale_lets_the_method_act(args: FusionArgs, passes: list[PassPlan]) -> None:
    """Refuse a method that no sampling pass's CFG scale lets act
    (:meth:`~lib_fusion.methods.base.Method.inert_at_cfg_scale`)."""
    reasons = [method_of(args).inert_at_cfg_scale(args, planned.cfg_scale) for planned in passes]
    if reasons and all(reasons):
        raise FusionArgumentError(f"{TITLE}: {reasons[0]}")


def _check_every_pass_has_an_uncond_branch(args: FusionArgs, passes: list[PassPlan]) -> None:
    """A rectified-flow family at CFG scale 1 runs no unconditional branch (the host skips it,
    and the guidance-distilled members are made to run so): a method that measures the CFG
    response has nothing to measure in that pass. The Stable Diffusion families' uncond is
    computed for the saliency even there, as before."""
    if not method_of(args).reads_guidance_response(args) or not active_is_flow():
        return
    for planned in passes:
        if math.isclose(planned.cfg_scale, 1.0):
            raise FusionArgumentError(
                f"{TITLE}: SNB picks each pixel by the checkpoints' classifier-free-guidance responses, and at CFG scale 1 "
                f"({planned.name}) this flow-matching checkpoint runs no unconditional branch (guidance-distilled models such "
                "as Flux dev, Flux schnell or Z-Image Turbo are made to run so); use Regions (a checkpoint per region needs no "
                "CFG), guidance or mask 'mean', or raise the CFG scale where the model allows it (Chroma, Lumina 2, Qwen-Image)"
            )


def _check_host(p: Any, args: FusionArgs) -> None:
    problem = unsupported_host() if model_loaded() else UNSUPPORTED_HOST  # the generation's model is loaded by now
    if problem is not None:
        raise FusionArgumentError(problem)
    if getattr(shared.sd_model, "is_wan", False):  # Neo's Wan engines: latents of (batch, channels, frames, height, width)
        raise FusionArgumentError(
            f"{TITLE}: the active checkpoint is a Wan video model, whose latents have a frame axis that the fusion's maps "
            "and windows do not read; fuse an image family, or turn Model Fusion off for this checkpoint"
        )
    if getattr(shared.sd_model, "cond_stage_key", None) == "edit":
        raise FusionArgumentError(f"{TITLE}: InstructPix2Pix (edit) checkpoints cannot be fused; load a text-to-image checkpoint")
    if getattr(p, "refiner_checkpoint", None) not in (None, "", "None", "none"):
        raise FusionArgumentError(f"{TITLE}: the refiner switches checkpoints mid-sampling; turn the refiner off to fuse")
    for name in ("width", "height"):
        value = getattr(p, name)
        if value % 8:
            low, high = value - value % 8, value - value % 8 + 8
            raise FusionArgumentError(
                f"{TITLE}: {name} {value} is not a multiple of 8 (one latent pixel is 8 image pixels); use {low or high} or {high}"
            )


def _check_not_a_copy_of_the_active(p: Any, args: FusionArgs, info: Any) -> None:
    """A two-model method run on the active checkpoint with itself and the same prompts gives
    the plain image: refuse it rather than label an unfused image as fused. With a prompt of
    its own it is prompt fusion (SNB), guidance away from that prompt, or another negative."""
    if not method_of(args).two_model or not is_active_checkpoint(info):
        return
    prompts, negatives = (
        list(getattr(p, "all_prompts", None) or [p.prompt]),
        list(getattr(p, "all_negative_prompts", None) or [p.negative_prompt]),
    )
    read = method_of(args).prompts_read(args.solo)

    def as_read(prompt: str) -> str:  # as the models read it: <lora:…> tags act on neither here, and the
        return " ".join(strip_networks(prompt).split())  # tokenizer splits on whitespace, so spaces do not count

    def same(fusion_prompt: str, main: str) -> bool:
        return as_read(fusion_prompt or main) == as_read(main)

    same_prompts = "prompt" not in read or all(same(args.prompt, prompt) for prompt in prompts)
    same_negatives = "negative_prompt" not in read or all(same(args.negative_prompt, negative) for negative in negatives)
    if same_prompts and same_negatives:
        raise FusionArgumentError(
            f"{TITLE}: the fusion checkpoint {info.title!r} is the active checkpoint and no fusion prompt differs from the "
            "main one, so the image would be the active model alone; choose another checkpoint, or give a fusion prompt "
            "of its own to fuse two prompts"
        )


def finish(p: Any, processed: Any = None) -> None:
    """``Script.postprocess``: add the comparison and previews, then drop the wrapper and the
    run's model references (its stats stay on ``p``)."""
    unwrap_sample(p)
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is None:
        return
    try:
        if processed is not None and run.error is None:
            add_outputs(p, processed, run)
    finally:
        release(run, getattr(p, HELD_ATTRIBUTE, None))
