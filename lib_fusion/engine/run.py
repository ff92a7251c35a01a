"""One generation with fusion on: per sampling pass and per denoiser call, what to run.

The host adapter (:mod:`lib_fusion.host`) makes the generation's plan
(:class:`~lib_fusion.engine.plan.Plan`) and feeds this object from the WebUI's hooks; the run
reads the plan, never rewrites it, and holds no WebUI imports or host state. Per denoiser
call it decides, from the step's DDPM timestep, whether the step is solo or fused and runs
only those model passes. Solo steps of the active model are handed straight to the host's
own UNet call, so they are bit-identical to a run without the extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from lib_fusion.arguments.args import FusionArgs
from lib_fusion.arguments.schedule import StepKind, step_kind
from lib_fusion.engine.plan import Plan
from lib_fusion.engine.preview_maps import Thinned, Trace
from lib_fusion.engine.region_pass import RegionLayout, layout_step, make_layout
from lib_fusion.engine.sampling_pass import (
    ACTIVE,
    ALONE_A,
    ALONE_B,
    FUSED,
    FUSION,
    HostStep,
    RegionSource,
    Role,
    SamplingPass,
    Stats,
    alone_variant,
)
from lib_fusion.fusion.conds import pick
from lib_fusion.fusion.denoise import CondsList, Model, SnbOptions, StepInput, guided_prediction, spread_to_rows
from lib_fusion.fusion.regions import Bootstrap, Region, pick_table, seed_noise
from lib_fusion.fusion.snb import MaskMemory
from lib_fusion.methods import Method, method_of
from lib_fusion.methods.base import StepContext


@dataclass
class _StepRows:
    """Fused output rows of one denoiser call, served to the host's UNet calls in order."""

    step: HostStep
    prediction: torch.Tensor | None = None
    """The step's prediction, one row per image (None until planned, or passed through)."""
    rows: torch.Tensor | None = None
    passthrough: bool = False
    cursor: int = 0


class FusionRun:
    """State of one generation; created in ``process``, dropped after ``postprocess``."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        """What the host resolved before the first step; the run reads it and never rewrites it."""
        self.v1, self.kg, self.ke = plan.args.selection
        self.options = SnbOptions(self.kg, self.ke, plan.args.saliency_uncond, plan.args.blur, plan.args.mask, plan.args.per_channel)
        self.error: BaseException | None = None
        self.passes: list[SamplingPass] = []
        self.stats = Stats()
        self.variant = FUSED
        self.batch = 0
        """The batch (``p.iteration``) being sampled."""
        self._traces: dict[int, Thinned] = {}
        """Per batch: fused SNB steps' maps, a bounded sample of them, kept for the previews."""
        self._colours: torch.Tensor | None = None
        self._pass: SamplingPass | None = None
        self._step: _StepRows | None = None
        self.results: dict[int, Any] = {}
        """Per image (index over the whole generation): the fused image as the host finished it."""
        self.alone: dict[str, dict[int, Any]] = {variant: {} for variant in (ALONE_A, ALONE_B, *self._more_variants)}
        """Per comparison variant and image index: that model's image alone."""

    @property
    def args(self) -> FusionArgs:
        """The plan's arguments."""
        return self.plan.args

    @property
    def method(self) -> Method:
        """The method object of the arguments the run holds."""
        return method_of(self.args)

    @property
    def strides_used(self) -> list[int]:
        """The stride each Regions pass laid out when it was ``auto`` (the infotext says which)."""
        if self.args.stride != "auto" or self.args.windows != "overlap":
            return []
        return [p.layout.stride for p in self.passes if p.layout is not None and p.layout.stride is not None]

    @property
    def variants(self) -> tuple[str, ...]:
        """The extra samplings of each batch."""
        return (ALONE_A, ALONE_B, *self._more_variants) if self.args.compare else ()

    @property
    def _more_variants(self) -> tuple[str, ...]:
        return tuple(alone_variant(index) for index in range(len(self.args.models)))

    def release(self) -> None:
        """Drop references to models and tensors once the generation is over."""
        self.passes.clear()
        self._pass = self._step = None
        self._colours = None
        self.results.clear()
        self._traces.clear()
        for images in self.alone.values():
            images.clear()

    # -- hooks ------------------------------------------------------------------------
    def begin_pass(self, sampling_pass: SamplingPass) -> None:
        if self.passes and self.passes[-1] is self._pass and self._pass.steps_seen == 0:
            # Forge prepares a hires pass twice and samples only the second: one pass, not two.
            self.passes.pop()
        self._pass = sampling_pass
        self._step = None
        self.passes.append(sampling_pass)
        if self.args.mask_ema > 0 or self.args.mask_freeze > 0:  # read by SNB only (the others keep the defaults)
            sampling_pass.mask_memory = MaskMemory(self.args.mask_ema, self.args.mask_freeze)

    def begin_step(self, step: HostStep) -> None:
        """``on_cfg_denoiser``: remember the layout; the work happens at the UNet call."""
        self._step = _StepRows(step)
        if self._pass is not None:
            self._pass.steps_seen += 1

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
            if not current.passthrough:
                current.rows = spread_to_rows(current.prediction, current.step.conds_list)
        start = current.cursor
        current.cursor += x.shape[0]
        if current.passthrough:
            self.stats.active_runs += 1
            return original(x, sigma, **kwargs)
        return current.rows[start : current.cursor].to(x.dtype)

    def predict(self, cfg_scale: float | None = None, image_cond: torch.Tensor | None = None) -> torch.Tensor | None:
        """The announced step's prediction, one row per image, in the sampler's units; None
        when the host's own model call serves it (Forge: from its conditioning modifier,
        which knows the step's final CFG scale and any replacement image conditioning)."""
        if self.error is not None:
            raise self.error
        current, sampling_pass = self._step, self._pass
        if current is None or sampling_pass is None or current.prediction is not None or current.passthrough:
            return None  # no announced step, or one planned already: leave the call alone
        if cfg_scale is not None:
            current.step.cfg_scale = cfg_scale
        if image_cond is not None:
            current.step.image_cond_in = image_cond
        sampling_pass.calls += 1
        self._plan(current, sampling_pass)
        if current.passthrough:
            self.stats.active_runs += 1
            return None
        return current.prediction

    # -- the step ---------------------------------------------------------------------
    def _plan(self, current: _StepRows, sampling_pass: SamplingPass) -> None:
        if self.method.lays_out_regions:
            self._plan_regions(current, sampling_pass)
        else:
            self._plan_two_models(current, sampling_pass)

    def _plan_two_models(self, current: _StepRows, sampling_pass: SamplingPass) -> None:
        """SNB, cross-model guidance or base uncond: model A alone outside the window (the
        WebUI's own call when A is the active checkpoint), the method's rows inside it."""
        step = current.step
        batch = step.batch
        sigma = step.sigma_in[-batch:]
        t = float(sampling_pass.sigma_to_t(sigma[:1]))
        kind = step_kind(t, self.v1, self.args.mode) if self.variant == FUSED else StepKind.SOLO
        if self.method.plain_at_every_step(self.args):
            kind = StepKind.SOLO  # e.g. guidance at w = 1, plain CFG: B is not needed
        self.stats.kinds.append(kind.value)
        self.stats.timesteps.append(t)
        self.stats.variants.append(self.variant)
        active = (ACTIVE, sampling_pass.active_fn, sampling_pass.active_conditioning)
        fusion = (FUSION, sampling_pass.fusion_fn, sampling_pass.fusion_conditioning)
        role_a, role_b = (active, fusion) if self.args.solo == "active" else (fusion, active)
        alone_roles = dict(zip(self._more_variants, sampling_pass.more_roles))
        solo = role_b if self.variant == ALONE_B else alone_roles.get(self.variant, role_a)
        joined = [(entry, role) for entry, role in zip(self.args.models, sampling_pass.more_roles) if entry.joins(t)]
        if kind is StepKind.FUSED:
            how_many = f" ({2 + len(joined)} models)" if joined else ""
            sampling_pass.progress(f"{self.method.label}{how_many} t={t:.0f}")
        else:
            phase = f"compare: {self.variant}" if self.variant != FUSED else "solo"
            sampling_pass.progress(f"{phase}: {solo[0]} t={t:.0f}")
        if kind is StepKind.SOLO and solo[0] == ACTIVE and sampling_pass.active_uses_host_conds:
            self.stats.solo_steps += 1
            self.stats.passthrough_steps += 1
            current.passthrough = True
            return
        inputs = _inputs(step, sampling_pass)
        if kind is StepKind.SOLO:
            self.stats.solo_steps += 1
            self._count_runs(active_runs=int(solo[0] == ACTIVE), fusion_runs=int(solo[0] == FUSION))
            if self.variant in alone_roles:
                self.stats.more_runs[solo[0]] += 1
            prediction = guided_prediction(_model(solo, step), inputs)
        else:
            self.stats.fused_steps += 1
            self._count_runs(active_runs=1, fusion_runs=1)
            model_a, model_b = _model(role_a, step), _model(role_b, step)
            joined_models = [(entry, _model(role, step)) for entry, role in joined]
            context = StepContext(self.args, self.options, self.kg, self.ke, joined_models, sampling_pass.mask_memory)
            fused = self.method.fused_step(model_a, model_b, inputs, context)
            prediction, maps = fused.prediction, fused.maps
            self.stats.more_runs.update(name for _, (name, _, _) in joined)
            if self.args.preview and maps[0] is not None:
                self._trace(step, t, maps)
        current.prediction = prediction

    def _trace(self, step: HostStep, t: float, maps: tuple[torch.Tensor | None, ...]) -> None:
        """Keep a fused step's maps for the previews, as one map per image (a per-channel
        mask or saliency is shown as its channel mean)."""
        hires = self._pass is not None and self._pass.hires
        # No copy to the CPU here: one every step would stall a GPU's queue.
        kept = [None if m is None else m.detach().float().mean(dim=1, keepdim=True) for m in maps]
        keeper = self._traces.setdefault(self.batch, Thinned(self.plan.preview_steps))
        keeper.add(Trace(self.batch, hires, step.index, t, *kept))

    @property
    def traces(self) -> list[Trace]:
        """The fused steps' maps kept for the previews, batch after batch."""
        return [trace for batch in sorted(self._traces) for trace in self._traces[batch].traces()]

    def _plan_regions(self, current: _StepRows, sampling_pass: SamplingPass) -> None:
        """Region MultiDiffusion: the background (main prompt, its checkpoint) and each region
        through its own model, over the windows of a large canvas."""
        step, source = current.step, sampling_pass.regions
        layout = self._layout(sampling_pass, tuple(step.x_in.shape[-2:]))
        self.stats.kinds.append("regions")
        self.stats.variants.append(self.variant)
        roles = self._region_roles(sampling_pass)
        if layout.most_views == 1 and len(layout.masks) == 1 and roles[0][0] == ACTIVE and sampling_pass.active_uses_host_conds:
            self.stats.passthrough_steps += 1  # no region and one window: the plain model
            current.passthrough = True
            return
        inputs = _inputs(step, sampling_pass)
        weights = [1.0, *(region.weight for region in self.args.regions)]
        whole_canvas = (0, layout.size[0], 0, layout.size[1])
        regions = [
            Region(_model(role, step), mask, weight, bootstrap=index > 0, area=area)
            for index, (role, mask, area, weight) in enumerate(zip(roles, layout.on_device(inputs.x), layout.areas, weights))
            if area.any_in(whole_canvas)  # the background is empty where the regions cover the whole canvas
        ]
        count, windows = len(self.args.regions), layout.most_views
        phase = "regions" if self.variant == FUSED else f"compare: {roles[0][0]} everywhere"
        windows_text = f"{windows} window{'' if windows == 1 else 's'}{'' if layout.views is not None else ' (shifted)'}"
        sampling_pass.progress(f"{phase}: {count} region{'' if count == 1 else 's'} + background, {windows_text}")
        bootstrap = None
        if self.args.regions and step.index < round(self.args.bootstrapping * (step.total_steps or 0)):
            bootstrap = self._bootstrap(layout, source, inputs, step, len(regions))
        result = layout_step(layout, regions, inputs, self.args.view_batch_size, bootstrap, source.seeds, step.index)
        self.stats.region_passes += result.passes
        self.stats.region_calls += result.calls
        self._count_runs(
            active_runs=int(any(r.model.name == ACTIVE for r in regions)), fusion_runs=int(any(r.model.name == FUSION for r in regions))
        )
        self.stats.region_model_runs.update({r.model.name for r in regions} - {ACTIVE, FUSION})
        current.prediction = result.prediction

    def _bootstrap(self, layout: RegionLayout, source: RegionSource, inputs: StepInput, step: HostStep, regions: int) -> Bootstrap:
        """Bootstrapping's colours, noise and colour picks: made at the pass's first
        bootstrapped step and moved to the device then, sliced at the others."""
        if self._colours is None:
            self._colours = source.colours()
        if layout.noise is None or layout.noise.shape[0] != step.batch:
            layout.noise = seed_noise(source.seeds, inputs.x.shape[1:]).to(inputs.x)
        steps = round(self.args.bootstrapping * (step.total_steps or 0))
        if layout.picks is None or layout.picks.shape[0] != step.batch:
            table = pick_table(source.seeds, steps, layout.most_views * regions, self._colours.shape[0])
            layout.picks = table.to(self._colours.device)
        self.stats.bootstrapped_steps += 1
        return Bootstrap(self._colours, layout.noise, source.noise_to, layout.picks, step.index)

    def _region_roles(self, sampling_pass: SamplingPass) -> list[Role]:
        """The background (main prompt) then each region, each on its checkpoint: the one the
        arguments name for it, or (comparison) the same one for all."""
        keyword = {"active": ACTIVE, "fusion": FUSION}
        models = [keyword.get(self.args.background, self.args.background), *(keyword.get(r.model, r.model) for r in self.args.regions)]
        if self.variant != FUSED:
            models = [ACTIVE if self.variant == ALONE_A else FUSION] * len(models)
        background = {
            ACTIVE: sampling_pass.active_conditioning,
            FUSION: sampling_pass.fusion_conditioning,
            **sampling_pass.regions.background,
        }
        functions = {ACTIVE: sampling_pass.active_fn, FUSION: sampling_pass.fusion_fn, **sampling_pass.region_fns}
        conditionings = [background, *sampling_pass.regions.conditionings]
        return [(model, functions[model], conditioning[model]) for model, conditioning in zip(models, conditionings)]

    def _layout(self, sampling_pass: SamplingPass, size: tuple[int, int]) -> RegionLayout:
        """Masks and windows for this pass's latent size, made once per pass."""
        if sampling_pass.layout is None or sampling_pass.layout.size != size:
            sampling_pass.layout = make_layout(self.args, self.plan.region_images, size, sampling_pass.regions.window)
            self.stats.latent_sizes.append(size)
        return sampling_pass.layout

    def _count_runs(self, active_runs: int, fusion_runs: int) -> None:
        self.stats.active_runs += active_runs
        self.stats.fusion_runs += fusion_runs


def _inputs(step: HostStep, sampling_pass: SamplingPass) -> StepInput:
    """The batch as one row per image (the uncond rows' x, sigma and image conditioning)."""
    batch = step.batch
    image_cond = step.image_cond_in if step.per_image else pick(step.image_cond_in, _first_rows(step.conds_list))
    return StepInput(
        x=step.x_in[-batch:],
        sigma=step.sigma_in[-batch:],
        image_cond=image_cond,
        image_uncond=step.image_cond_in[-batch:],
        cfg_scale=step.cfg_scale,
        units=sampling_pass.units,
        flow=sampling_pass.flow,
        max_rows=sampling_pass.max_rows,
        cfg_rule=sampling_pass.cfg_rule,
        width_join=sampling_pass.width_join,
    )


def _model(role: Role, step: HostStep) -> Model:
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
