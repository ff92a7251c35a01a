"""One generation with fusion on: per sampling pass and per denoiser call, what to run.

The host adapter (:mod:`lib_fusion.host`) feeds this object from the WebUI's hooks; it holds
no WebUI imports. Per denoiser call it decides, from the step's DDPM timestep, whether the
step is solo or fused and runs only those model passes. Solo steps of the active model are
handed straight to the host's own UNet call, so they are bit-identical to a run without
the extension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lib_fusion.args import FusionArgs
from lib_fusion.denoise import Conditioning, CondsList, Model, ModelFn, SnbOptions, StepInput, guided, snb_step, spread_to_rows
from lib_fusion.schedule import StepKind, step_kind

ConditioningFn = Callable[["HostStep"], Conditioning]


@dataclass
class HostStep:
    """What ``on_cfg_denoiser`` shows of one denoiser call (the host's full row layout)."""

    x_in: torch.Tensor
    sigma_in: torch.Tensor
    image_cond_in: torch.Tensor
    text_cond: object
    text_uncond: object
    conds_list: CondsList
    index: int
    cfg_scale: float

    @property
    def batch(self) -> int:
        return len(self.conds_list)


@dataclass
class SamplingPass:
    """One sampling run (first pass, hires pass, img2img) as the host adapter prepared it."""

    active_fn: ModelFn
    fusion_fn: ModelFn
    active_conditioning: ConditioningFn
    fusion_conditioning: ConditioningFn
    active_uses_host_conds: bool
    """The active model's conditioning is the host's own: its solo steps can pass through."""
    sigma_to_t: Callable[[torch.Tensor], float]
    units: str
    max_rows: int | None
    calls: int = 0


@dataclass
class _StepRows:
    """Fused output rows of one denoiser call, served to the host's UNet calls in order."""

    step: HostStep
    rows: torch.Tensor | None = None
    passthrough: bool = False
    cursor: int = 0


@dataclass
class Stats:
    """Counters the tests and benchmarks read: which passes actually ran."""

    solo_steps: int = 0
    fused_steps: int = 0
    passthrough_steps: int = 0
    active_runs: int = 0
    fusion_runs: int = 0
    kinds: list[str] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)


class FusionRun:
    """State of one generation; created in ``process``, dropped after ``postprocess``."""

    def __init__(self, args: FusionArgs) -> None:
        self.args = args
        self.v1, self.kg, self.ke = args.window
        self.options = SnbOptions(self.kg, self.ke, args.saliency_uncond, args.blur, args.mask == "soft")
        self.error: BaseException | None = None
        self.passes: list[SamplingPass] = []
        self.stats = Stats()
        self.last_mask: torch.Tensor | None = None
        self._pass: SamplingPass | None = None
        self._step: _StepRows | None = None
        # Slots the host adapter fills: resolved checkpoint, loaded model, its hook objects.
        self.model_info: Any = None
        self.fusion_model: Any = None
        self.patched: list[Any] | None = None
        self.callback: Callable[[Any], None] | None = None

    def release(self) -> None:
        """Drop references to models and tensors once the generation is over."""
        self.passes.clear()
        self._pass = self._step = None
        self.fusion_model = None

    # -- hooks ------------------------------------------------------------------------
    def begin_pass(self, sampling_pass: SamplingPass) -> None:
        self._pass = sampling_pass
        self._step = None
        self.passes.append(sampling_pass)

    def begin_step(self, step: HostStep) -> None:
        """``on_cfg_denoiser``: remember the layout; the work happens at the UNet call."""
        self._step = _StepRows(step)

    def forward(self, original: Callable[..., torch.Tensor], x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        """Stands in for the host's inner-model call (one chunk of the step's rows)."""
        if self.error is not None:
            raise self.error
        current, sampling_pass = self._step, self._pass
        if current is None or sampling_pass is None or current.cursor + x.shape[0] > current.step.x_in.shape[0]:
            # A call outside the layout we saw (another extension re-running the model): leave it alone.
            return original(x, sigma, **kwargs)
        if current.rows is None and not current.passthrough:
            sampling_pass.calls += 1
            self._plan(current, sampling_pass)
        start = current.cursor
        current.cursor += x.shape[0]
        if current.passthrough:
            self.stats.active_runs += 1
            return original(x, sigma, **kwargs)
        return current.rows[start : current.cursor].to(x.dtype)

    # -- the step ---------------------------------------------------------------------
    def _plan(self, current: _StepRows, sampling_pass: SamplingPass) -> None:
        step = current.step
        batch = step.batch
        sigma = step.sigma_in[-batch:]
        t = float(sampling_pass.sigma_to_t(sigma[:1]))
        kind = step_kind(t, self.v1, self.args.mode)
        self.stats.kinds.append(kind.value)
        self.stats.timesteps.append(t)
        solo_is_active = self.args.solo == "active"
        if kind is StepKind.SOLO and solo_is_active and sampling_pass.active_uses_host_conds:
            self.stats.solo_steps += 1
            self.stats.passthrough_steps += 1
            current.passthrough = True
            return
        first_cond_row = _first_rows(step.conds_list)
        inputs = StepInput(
            x=step.x_in[-batch:],
            sigma=sigma,
            image_cond=step.image_cond_in[first_cond_row],
            image_uncond=step.image_cond_in[-batch:],
            cfg_scale=step.cfg_scale,
            units=sampling_pass.units,
            max_rows=sampling_pass.max_rows,
        )
        active = ("active checkpoint", sampling_pass.active_fn, sampling_pass.active_conditioning)
        fusion = ("fusion checkpoint", sampling_pass.fusion_fn, sampling_pass.fusion_conditioning)
        role_a, role_b = (active, fusion) if solo_is_active else (fusion, active)
        model_a = _model(role_a, step)
        if kind is StepKind.SOLO:
            self.stats.solo_steps += 1
            self._count_runs(active_runs=int(solo_is_active), fusion_runs=int(not solo_is_active))
            prediction = guided(model_a, inputs)[1]
        else:
            self.stats.fused_steps += 1
            self._count_runs(active_runs=1, fusion_runs=1)
            prediction, self.last_mask = snb_step(model_a, _model(role_b, step), inputs, self.options)
        current.rows = spread_to_rows(prediction, step.conds_list)

    def _count_runs(self, active_runs: int, fusion_runs: int) -> None:
        self.stats.active_runs += active_runs
        self.stats.fusion_runs += fusion_runs


def _model(role: tuple[str, ModelFn, ConditioningFn], step: HostStep) -> Model:
    """A model with its conditioning for this step; built only for steps that run it
    (the conditioning may have to be encoded first)."""
    name, fn, conditioning = role
    return Model(name, fn, conditioning(step))


def _first_rows(conds_list: CondsList) -> list[int]:
    """Row of each image's first cond (all its rows share x and image_cond)."""
    rows, offset = [], 0
    for conds in conds_list:
        rows.append(offset)
        offset += len(conds)
    return rows
