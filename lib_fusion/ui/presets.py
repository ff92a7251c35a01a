"""Presets: several fields set at once, each with one line saying what it does.

The first two are the paper's applications as its official README configures them
(MagicFusion.github.io: ``magicfusion.sh`` and the application notes); the others are the
two ways round of "one checkpoint lays out the picture, the fusion adds the details".
A preset is only a way of filling the controls: the generation reads the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CUSTOM = "custom"
ACTIVE_TITLE = "<active checkpoint>"
"""Stands for the active checkpoint's title in a preset's ``model``."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)


PRESETS: tuple[Preset, ...] = (
    Preset(
        "General + expert (paper)",
        "The paper's lion: both checkpoints fuse over the noisiest 40 %, then the active one finishes alone: "
        "its composition and realism, the fusion checkpoint's subject and style.",
        {"method": "snb", "fusion_selection": "600,1,1", "mode": 2, "solo": "active"},
    ),
    Preset(
        "One model, two prompts (paper)",
        "The paper's recontextualisation: the active checkpoint runs twice, with the main prompt and with the "
        "fusion prompt (write it below), fused from t = 600 down.",
        {"method": "snb", "model": ACTIVE_TITLE, "fusion_selection": "600,1,1", "mode": 1, "solo": "active"},
    ),
    Preset(
        "Fusion checkpoint's composition (paper's bee)",
        "The fusion checkpoint alone lays out the first 15 % of the denoising, then both fuse for the details.",
        {"method": "snb", "fusion_selection": "850,1,1", "mode": 1, "solo": "fusion"},
    ),
    Preset(
        "Active checkpoint's composition",
        "The active checkpoint alone lays out the first 15 % of the denoising, then both fuse for the details.",
        {"method": "snb", "fusion_selection": "850,1,1", "mode": 1, "solo": "active"},
    ),
)
NAMES: tuple[str, ...] = (CUSTOM, *(preset.name for preset in PRESETS))


def values_of(name: str, active_title: str) -> dict[str, Any]:
    """The field values a preset sets (the active checkpoint's title filled in); custom sets none."""
    if name == CUSTOM:
        return {}
    preset = next((preset for preset in PRESETS if preset.name == name), None)
    if preset is None:
        raise ValueError(f"preset: choose one of {', '.join(NAMES)}, got {name!r}")
    return {key: active_title if value == ACTIVE_TITLE else value for key, value in preset.values.items()}


def matching(current: dict[str, Any], active_title: str) -> str:
    """The preset whose every field the controls hold now, or custom."""
    for preset in PRESETS:
        wanted = values_of(preset.name, active_title)
        if all(_same(current.get(key), value) for key, value in wanted.items()):
            return preset.name
    return CUSTOM


def description(name: str) -> str:
    preset = next((preset for preset in PRESETS if preset.name == name), None)
    return preset.description if preset else "Custom: the controls below as you set them."


def _same(held: Any, wanted: Any) -> bool:
    """UI values arrive as text or floats (the mode radio gives "2")."""
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        try:
            return float(held) == wanted
        except (TypeError, ValueError):
            return False
    return held == wanted
