"""One generation's resolved plan: what the host settled before the first step, handed to the
engine whole and never rewritten (:class:`~lib_fusion.engine.run.FusionRun` only reads it).

The host (:func:`lib_fusion.host.generation.start`) makes it once: the final arguments (each
checkpoint by the title the WebUI lists, each mask as the 1-bit PNG it was read as), the
checkpoints resolved, the masks decoded, each sampling pass's steps foreseen, and every
refusal that can come before sampling, budget included. What only sampling can tell (UniPC's
own schedule) is checked after the first batch (:mod:`lib_fusion.engine.fused_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from lib_fusion.arguments.args import FusionArgs


@dataclass(frozen=True)
class PassPlan:
    """One sampling pass as the host foresees it before anything loads."""

    name: str
    """"txt2img", "hires pass" or "img2img": how messages name it."""
    cfg_scale: float
    """The CFG scale it samples at (Forge's hires pass has one of its own)."""
    timesteps: tuple[float, ...] | None
    """The DDPM timestep of each of its model calls, in order, cut at the denoising strength;
    None where the sampler keeps its own schedule (UniPC), known only as it runs."""


@dataclass(frozen=True)
class Plan:
    args: FusionArgs
    """The arguments as the generation runs them (immutable, like the plan)."""
    fusion: Any = None
    """The fusion checkpoint as the WebUI lists it, or None when no step needs it."""
    more: tuple[Any, ...] = ()
    """SNB's further fusion checkpoints (``args.models``), resolved, in order."""
    regions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Regions: the checkpoints regions (or the background) name besides the active and the
    fusion one, by title."""
    region_images: tuple[torch.Tensor | None, ...] = ()
    """Per foreground region: its image-sized mask decoded (None for a box)."""
    preview_steps: int = 3
    """Fused steps a preview shows per image (the host's setting at the start)."""
    passes: tuple[PassPlan, ...] = ()
    """The sampling passes the generation will run, each with its steps."""

    @property
    def checkpoints(self) -> list[Any]:
        """Every checkpoint this generation runs besides the active one (fusion, further, regions')."""
        return [*([self.fusion] if self.fusion is not None else []), *self.more, *self.regions.values()]
