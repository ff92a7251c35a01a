"""How the Forge family calls the fusion: a conditioning modifier and a post-CFG function on
a clone of ``forge_objects.unet``, on Forge main and Forge Neo alike (``docs/hosts.md``).

Forge never calls ``on_cfg_denoised`` nor ``combine_denoised``; per denoiser call it runs
``sampling_function``: the UNet patcher's conditioning modifiers, then
``calc_cond_uncond_batch`` over the compiled conds, CFG, then the post-CFG functions. The
step is announced by ``on_cfg_denoiser`` as on AUTOMATIC1111 (one row per image here). In
the modifier the run decides the step: a solo step of the active model is left to Forge
untouched; any other step is computed by the run (each model through Forge's own
``calc_cond_uncond_batch``, so LoRA, attention patches and the memory manager apply), the
modifier hands Forge no cond to run, and the post-CFG function returns the fused
prediction. Forge's models return x0 (its ``KModel`` converts eps/v), so the run works in
x0 units and measures saliency in eps units, as for k-diffusion on AUTOMATIC1111.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from modules import shared

from lib_fusion.engine.run import FusionRun
from lib_fusion.engine.sampling_pass import RegionSource, SamplingPass
from lib_fusion.fusion.conds import Cond
from lib_fusion.host import forge_loading
from lib_fusion.host.checkpoints import model_window
from lib_fusion.host.loading import FusionModel, Held
from lib_fusion.host.probe import host_module, noise_form
from lib_fusion.host.sampling import bootstrap_colours, hookable_run, pass_conditionings, show_progress
from lib_fusion.host.schedules import forge_timesteps

PER_IMAGE_STEPS = True
"""Forge's ``on_cfg_denoiser`` shows one row per image (x, sigma, image conditioning)."""


def load_checkpoint(info: Any, run: FusionRun, capacity: int) -> FusionModel:
    return forge_loading.load_fusion_model(info, run.method.needs_fusion_text_encoder(run.args), capacity)


def sampling_residency(model: FusionModel | None) -> contextlib.AbstractContextManager[None]:
    """Forge's memory manager places the fusion UNet (it is registered with each pass's
    UNet patcher, :func:`begin_pass`); nothing to move by hand."""
    return contextlib.nullcontext()


def end_sampling(held: Held) -> None:
    """Give the model its own UNet patcher back (Forge resets it per batch anyway; this
    leaves nothing of ours on ``shared.sd_model`` between generations), and take the fusion
    UNet and our hooks off our clones: Forge's memory manager keeps the last clone it
    placed, and through it the fusion model and the run would outlive the generation."""
    for objects, base, clone in reversed(held.patched or ()):
        objects.unet = base
        clone.extra_model_patchers_during_sampling.clear()
        for key in ("conditioning_modifiers", "sampler_post_cfg_function"):  # they hold the run
            clone.model_options.pop(key, None)


def begin_pass(p: Any) -> None:
    """``process_before_every_sampling``: our hooks on a clone of this pass's UNet patcher.
    Forge calls it twice in a hires pass and samples with the second: each call patches the
    fresh patcher Forge has just set, and the run keeps one pass."""
    due = hookable_run(p)
    if due is None:
        return
    run, held = due
    try:
        objects = p.sd_model.forge_objects
        base = objects.unet
        unet = base.clone()
        live: dict[str, Any] = {"options": unet.model_options, "prediction": None}
        run.begin_pass(_sampling_pass(p, run, held, unet, live))
        unet.add_conditioning_modifier(_modifier(run, live))
        unet.set_model_sampler_post_cfg_function(_post_cfg(live))
        for model in (held.fusion, *held.more, *held.regions.values()):
            if model is not None and model.unet is not None:
                unet.add_extra_model_patcher_during_sampling(model.unet)
        objects.unet = unet
        held.patched.append((objects, base, unet))
    except Exception as error:
        run.error = error


def _modifier(run: FusionRun, live: dict[str, Any]) -> Callable[..., tuple]:
    """Forge's conditioning modifier: plan the step. A plain function, not a bound method or
    partial: Forge deep-copies ``model_options`` on every clone, and functions are copied by
    reference (a partial would copy the whole run)."""

    def modifier(model, x, timestep, uncond, cond, cond_scale, model_options, seed):  # noqa: ANN001, ANN202 (Forge's signature)
        live["options"], live["prediction"] = model_options, None
        concat = getattr(shared.sd_model.forge_objects.unet, "extra_concat_condition", None)
        prediction = run.predict(cfg_scale=float(cond_scale), image_cond=concat)
        if prediction is None:  # Forge's own call serves the step
            return model, x, timestep, uncond, cond, cond_scale, model_options, seed
        live["prediction"] = prediction.to(x.dtype)
        return model, x, timestep, [], [], cond_scale, model_options, seed  # nothing left for Forge to run

    return modifier


def _post_cfg(live: dict[str, Any]) -> Callable[[dict], torch.Tensor]:
    def post_cfg(args: dict) -> torch.Tensor:
        prediction, live["prediction"] = live["prediction"], None
        return args["denoised"] if prediction is None else prediction

    return post_cfg


def _sampling_pass(p: Any, run: FusionRun, held: Held, unet: Any, live: dict[str, Any]) -> SamplingPass:
    fusion = held.fusion or FusionModel("", None)
    active_model = unet.model

    def active_fn(x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor) -> torch.Tensor:
        control = getattr(shared.sd_model.forge_objects.unet, "controlnet_linked_list", None)
        return _through_forge(active_model, live["options"], control, x, sigma, cond, image_cond)

    fusion_fn = active_fn if fusion.unet is None else _model_fn(fusion.unet)
    region_fns = {title: _model_fn(model.unet) for title, model in held.regions.items()}
    region_encoders = {title: model.text_encoder for title, model in held.regions.items()}
    more_encoders = [model.text_encoder for model in held.more]
    conditionings = pass_conditionings(p, run, shared.sd_model, fusion.text_encoder, region_encoders, more_encoders)
    more_roles = [(model.title, _model_fn(model.unet), conditioning) for model, conditioning in zip(held.more, conditionings.more)]
    predictor = active_model.predictor
    timesteps = forge_timesteps(predictor)
    regions = None
    if run.method.lays_out_regions:
        regions = RegionSource(
            conditionings=conditionings.regions,
            background=conditionings.background,
            window=model_window(),
            noise_to=lambda x0, noise, sigma: predictor.noise_scaling(sigma.to(x0.dtype).view(-1, 1, 1, 1), noise, x0),
            colours=bootstrap_colours,
            seeds=list(p.seeds),
        )
    return SamplingPass(
        active_fn=active_fn,
        fusion_fn=fusion_fn,
        active_conditioning=conditionings.active,
        fusion_conditioning=conditionings.fusion,
        active_uses_host_conds=conditionings.active_uses_host_conds,
        sigma_to_t=lambda s: float(timesteps(s)[0]),
        units="x0",
        flow=noise_form(predictor) == "flow",
        max_rows=None,
        cfg_rule="weighted_mean",
        width_join="repeat",
        regions=regions,
        more_roles=more_roles,
        region_fns=region_fns,
        progress=show_progress,
        hires=bool(getattr(p, "is_hr_pass", False)),
    )


def _model_fn(unet: Any) -> Callable[[torch.Tensor, torch.Tensor, Cond, torch.Tensor], torch.Tensor]:
    """Another checkpoint's UNet patcher as a model callable (no ControlNet: its hint belongs
    to the active model)."""

    def fn(x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor) -> torch.Tensor:
        return _through_forge(unet.model, unet.model_options, None, x, sigma, cond, image_cond)

    return fn


def _through_forge(
    model: Any, options: dict, control: Any, x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor
) -> torch.Tensor:
    """One model call on these rows through Forge's ``calc_cond_uncond_batch``: the rows as
    one compiled cond of weight 1 (the output divided by 1, so exactly the model's), the
    image conditioning concatenated where Forge would, ControlNet for the active model."""
    condition = host_module("backend.sampling.condition", "to run a model through Forge's sampling function")
    sampling_function = host_module("backend.sampling.sampling_function", "to run a model through Forge's sampling function")
    compiled = condition.compile_conditions(cond)
    if isinstance(image_cond, torch.Tensor) and image_cond.shape[0] == x.shape[0] and image_cond.shape[2:] == x.shape[2:]:
        compiled[0]["model_conds"]["c_concat"] = condition.Condition(image_cond)
    if control is not None:
        compiled[0]["control"] = control
    out, _ = sampling_function.calc_cond_uncond_batch(model, compiled, None, x, sigma, options)
    return out
