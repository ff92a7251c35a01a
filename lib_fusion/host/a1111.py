"""How AUTOMATIC1111 1.10.x calls the fusion: the sampling hook.

``on_cfg_denoiser`` shows the step's rows; the wrapped inner model of the sampler's
``CFGDenoiser`` is where the passes run (``docs/hosts.md``). The wrapper
around ``p.sample`` (:mod:`.sampling`) installs and removes it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable

import torch
from modules import shared

from lib_fusion.engine.run import FusionRun
from lib_fusion.engine.sampling_pass import RegionSource, SamplingPass
from lib_fusion.fusion.conds import Cond
from lib_fusion.host import loading
from lib_fusion.host.checkpoints import model_window
from lib_fusion.host.loading import EncoderModel, FusionModel, Held, UNetModel
from lib_fusion.host.prediction import active_prediction, denoiser_class
from lib_fusion.host.sampling import bootstrap_colours, hookable_run, pass_conditionings, show_progress

PER_IMAGE_STEPS = False
"""``on_cfg_denoiser`` shows the full row layout (a row per ``AND`` sub-prompt, then the unconds)."""


def load_checkpoint(info: Any, run: FusionRun, capacity: int) -> FusionModel:
    return loading.load_fusion_model(info, run.method.needs_fusion_text_encoder(run.args), capacity)


def sampling_residency(model: FusionModel | None) -> contextlib.AbstractContextManager[None]:
    return loading.sampling_residency(model)


def end_sampling(held: Held) -> None:
    """Give the sampler's inner models their own ``forward`` back."""
    for inner in held.patched or ():
        inner.__dict__.pop("forward", None)


def begin_pass(p: Any) -> None:
    """``process_before_every_sampling``: hook the sampler of this pass. Errors go to the run."""
    due = hookable_run(p)
    if due is None:
        return
    run, held = due
    try:
        denoiser = p.sampler.model_wrap_cfg
        inner = denoiser.inner_model
        original = inner.forward
        run.begin_pass(_sampling_pass(p, run, held, denoiser, inner, original))
        inner.forward = functools.partial(run.forward, original)
        held.patched.append(inner)
    except Exception as error:
        run.error = error


def _sampling_pass(p: Any, run: FusionRun, held: Held, denoiser: Any, inner: Any, original: Callable) -> SamplingPass:
    fusion = held.fusion or FusionModel("", None)  # None: no region uses the fusion checkpoint
    is_kdiffusion = hasattr(inner, "sigma_to_t")
    make_cond = _condition_dict_maker(denoiser)

    def call(model_forward: Callable) -> Callable:
        def fn(x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor) -> torch.Tensor:
            return model_forward(x, sigma, cond=make_cond(cond, image_cond))

        return fn

    def wrapped(model: FusionModel) -> Callable:
        cls = denoiser_class(inner, model.prediction or active_prediction(), model.title, p.sampler_name)
        return _construct(cls, inner, UNetModel(model.unet))

    fusion_forward = original if fusion.unet is None else wrapped(fusion)
    fusion_encoder = EncoderModel(fusion.text_encoder) if fusion.text_encoder is not None else None
    region_fns = {title: call(wrapped(model)) for title, model in held.regions.items()}
    region_encoders = {title: EncoderModel(m.text_encoder) if m.text_encoder else None for title, m in held.regions.items()}
    more_encoders = [EncoderModel(model.text_encoder) if model.text_encoder else None for model in held.more]
    conditionings = pass_conditionings(p, run, shared.sd_model, fusion_encoder, region_encoders, more_encoders)
    more_roles = [(model.title, call(wrapped(model)), conditioning) for model, conditioning in zip(held.more, conditionings.more)]
    regions = None
    if run.method.lays_out_regions:
        regions = RegionSource(
            conditionings=conditionings.regions,
            background=conditionings.background,
            window=model_window(),
            noise_to=_noise_to(inner, is_kdiffusion),
            colours=bootstrap_colours,
            seeds=list(p.seeds),
        )
    return SamplingPass(
        active_fn=call(original),
        fusion_fn=call(fusion_forward),
        active_conditioning=conditionings.active,
        fusion_conditioning=conditionings.fusion,
        active_uses_host_conds=conditionings.active_uses_host_conds,
        sigma_to_t=(lambda s: float(inner.sigma_to_t(s)[0])) if is_kdiffusion else (lambda s: float(s[0])),
        units="x0" if is_kdiffusion else "eps",
        max_rows=None if shared.opts.batch_cond_uncond else len(p.prompts),
        regions=regions,
        more_roles=more_roles,
        region_fns=region_fns,
        progress=show_progress,
        hires=bool(getattr(p, "is_hr_pass", False)),
    )


def _construct(cls: type, inner: Any, model: UNetModel) -> Any:
    """The host's denoiser ``cls`` (:func:`lib_fusion.host.prediction.denoiser_class`: the
    sampler's own, or its counterpart for the other prediction type) around a fusion UNet, as
    the sampler built its own; only some constructors take ``quantize``."""
    if "quantize" in inspect.signature(cls.__init__).parameters:
        return cls(model, quantize=getattr(inner, "quantize", False))
    return cls(model)


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
