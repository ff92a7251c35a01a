"""What a generation's run is made of: the host's view of one denoiser call (:class:`HostStep`),
one sampling pass as the host adapter prepared it (:class:`SamplingPass`, :class:`RegionSource`),
the models' roles and the counters tests and benchmarks read (:class:`Stats`). Plain data, no
WebUI imports; :mod:`lib_fusion.engine.run` acts on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from lib_fusion.engine.region_pass import ModelWindow, RegionLayout
from lib_fusion.fusion.conds import WidthJoin
from lib_fusion.fusion.denoise import Conditioning, CondsList, ModelFn
from lib_fusion.fusion.guidance import CfgRule
from lib_fusion.fusion.snb import MaskMemory

ConditioningFn = Callable[["HostStep"], Conditioning]
Role = tuple[str, ModelFn, ConditioningFn]
"""(name, model callable, conditioning of this step)."""
ACTIVE, FUSION = "active checkpoint", "fusion checkpoint"
FUSED, ALONE_A, ALONE_B = "fused", "A alone", "B alone"
"""What one sampling of a batch makes: the fusion, or (comparison) one model alone: SNB's
model A or B (or :func:`alone_variant`); Regions' active or fusion checkpoint for every
region and the background."""


def alone_variant(index: int) -> str:
    """The comparison variant of SNB's further fusion checkpoint ``index``: C alone, D alone, …"""
    return f"{chr(ord('C') + index)} alone"


@dataclass
class HostStep:
    """What ``on_cfg_denoiser`` shows of one denoiser call.

    AUTOMATIC1111 shows its full row layout (a row per ``AND`` sub-prompt, then a row per
    image for the uncond); Forge shows one row per image (``per_image``)."""

    x_in: torch.Tensor
    sigma_in: torch.Tensor
    image_cond_in: torch.Tensor
    text_cond: object
    text_uncond: object
    conds_list: CondsList
    index: int
    cfg_scale: float
    total_steps: int | None = None
    per_image: bool = False

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
    """The DDPM timestep of a step's sigma (``fusion_selection``'s axis)."""
    units: str
    max_rows: int | None
    flow: bool = False
    """The active family is a rectified flow (:attr:`lib_fusion.fusion.denoise.StepInput.flow`)."""
    cfg_rule: CfgRule = "sum"
    """How the host combines ``AND`` sub-prompts in its CFG (Forge: ``weighted_mean``)."""
    width_join: WidthJoin = "equal"
    """How the host batches conditionings of different token widths (Forge: ``repeat``)."""
    regions: RegionSource | None = None
    more_roles: list[Role] = field(default_factory=list)
    """SNB's further fusion checkpoints (``args.models``, in order): name, callable, conditioning."""
    region_fns: dict[str, ModelFn] = field(default_factory=dict)
    """Regions: the model callable of each checkpoint a region names besides the active and
    the fusion one, by title."""
    progress: Callable[[str], None] = lambda text: None
    """Shows what a step runs (the WebUI's progress text)."""
    hires: bool = False
    """The hires-fix pass of txt2img (labels the previews)."""
    steps_seen: int = 0
    """Denoiser calls the host announced (``on_cfg_denoiser``) in this pass."""
    calls: int = 0
    """Of those, the ones whose model call reached the fusion (the rest means a bypass)."""
    layout: RegionLayout | None = None
    mask_memory: MaskMemory | None = None
    """SNB's temporal mask options, carried from step to step of this pass."""


@dataclass
class RegionSource:
    """What the host prepared for the Regions method in one pass."""

    conditionings: list[dict[str, ConditioningFn]]
    """Per foreground region (in the arguments' order): its conditioning for each model
    (:data:`ACTIVE`, :data:`FUSION`), encoded on first use."""
    background: dict[str, ConditioningFn]
    """The main prompt for each checkpoint regions name, by title (a background of its own)."""
    window: ModelWindow
    noise_to: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    colours: Callable[[], torch.Tensor]
    """Latents of the bootstrapping colours, encoded on first use."""
    seeds: list[int]


@dataclass
class Stats:
    """Counters the tests and benchmarks read: which passes actually ran."""

    solo_steps: int = 0
    fused_steps: int = 0
    passthrough_steps: int = 0
    active_runs: int = 0
    fusion_runs: int = 0
    region_passes: int = 0
    """(view, region) model passes the Regions method ran."""
    region_calls: int = 0
    more_runs: Counter = field(default_factory=Counter)
    """SNB: fused steps each further fusion checkpoint joined, by title."""
    region_model_runs: Counter = field(default_factory=Counter)
    """Regions: steps each checkpoint a region names (besides active and fusion) ran, by title."""
    bootstrapped_steps: int = 0
    latent_sizes: list[tuple[int, int]] = field(default_factory=list)
    """(H, W) of each pass the Regions method laid out."""
    kinds: list[str] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    """Per denoiser call: :data:`FUSED`, :data:`ALONE_A`, :data:`ALONE_B` or :func:`alone_variant`."""
