"""Region MultiDiffusion (Bar-Tal et al., ICML 2023): each region with its prompt on its
checkpoint, the background's main prompt on the active one (or ``background``). Its steps are
a canvas of views, not a fused step of two models (:mod:`lib_fusion.engine.region_pass`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from lib_fusion.methods.base import Method

REGIONS_FIELDS = (
    "model",
    "models",
    "text_encoder",
    "regions",
    "background",
    "bootstrapping",
    "window",
    "stride",
    "windows",
    "view_batch_size",
    "circular",
)


@dataclass(frozen=True)
class Regions(Method):
    two_model: bool = False
    lays_out_regions: bool = True

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        return ()  # each region carries its own prompts

    def needs_fusion_checkpoint(self, values: Mapping[str, Any]) -> bool:
        """When a region or the background asks for it, or the comparison shows it everywhere."""
        regions = values.get("regions") or ()
        return bool(values.get("compare")) or values.get("background") == "fusion" or any(region.model == "fusion" for region in regions)

    def needs_fusion_text_encoder(self, args: Any) -> bool:
        return args.text_encoder == "own"  # the background is the active checkpoint's: no model A to play


REGIONS = Regions("regions", "regions", "layout", fields=REGIONS_FIELDS)
