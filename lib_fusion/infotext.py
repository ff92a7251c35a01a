"""Fusion parameters in the image's infotext (``Key: value`` pairs) and back.

Options at their default are left out to keep the infotext short; a missing key reads
back as the default, and a missing ``Fusion`` key as "fusion off".
"""

from __future__ import annotations

from typing import Any

from lib_fusion.args import FIELDS, FusionArgs, FusionArgumentError

KEYS: dict[str, str] = {
    "method": "Fusion",
    "model": "Fusion model",
    "prompt": "Fusion prompt",
    "negative_prompt": "Fusion negative prompt",
    "solo": "Fusion solo",
    "fusion_selection": "Fusion selection",
    "mode": "Fusion mode",
    "saliency_uncond": "Fusion saliency uncond",
    "text_encoder": "Fusion text encoder",
    "blur": "Fusion blur",
    "mask": "Fusion mask",
}
"""Field -> infotext key. ``Fusion`` (the method) doubles as the on switch."""

ALWAYS_WRITTEN = ("method", "model", "solo", "fusion_selection", "mode")


def to_infotext(args: FusionArgs, model_title: str | None = None) -> dict[str, Any]:
    """Infotext pairs of an enabled fusion; ``model_title`` is the resolved checkpoint title."""
    if not args.enabled:
        return {}
    defaults = FusionArgs()
    values = args.dict()
    if model_title:
        values["model"] = model_title
    return {key: values[field] for field, key in KEYS.items() if field in ALWAYS_WRITTEN or values[field] != getattr(defaults, field)}


def from_infotext(params: dict[str, Any]) -> FusionArgs:
    """Arguments from parsed infotext (``parse_generation_parameters``); strings are converted."""
    if KEYS["method"] not in params:
        return FusionArgs()
    data: dict[str, Any] = {"enabled": True}
    for field, key in KEYS.items():
        if key in params:
            value = params[key]
            data[field] = int(float(value)) if field == "mode" else str(value)
    return FusionArgs.parse(data)


def paste_value(params: dict[str, Any], field: str) -> Any:
    """The UI value of ``field`` when an infotext is pasted (PNG Info -> Send to txt2img).

    An infotext whose fusion part does not validate pastes as "fusion off" rather than
    breaking the paste of everything else.
    """
    try:
        args = from_infotext(params)
    except (FusionArgumentError, ValueError):
        args = FusionArgs()
    return args.to_ui()[FIELDS.index(field)]
