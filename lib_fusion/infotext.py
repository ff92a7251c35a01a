"""Fusion parameters in the image's infotext (``Key: value`` pairs) and back.

Options at their default are left out to keep the infotext short; a missing key reads
back as the default, and a missing ``Fusion`` key as "fusion off".
"""

from __future__ import annotations

from typing import Any

from lib_fusion.args import FIELDS, INTEGER_FIELDS, USED_BY, FusionArgs, FusionArgumentError, regions_json

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
    "regions": "Fusion regions",
    "bootstrapping": "Fusion bootstrapping",
    "window": "Fusion window",
    "stride": "Fusion stride",
    "view_batch_size": "Fusion view batch",
    "circular": "Fusion circular",
}
"""Field -> infotext key. ``Fusion`` (the method) doubles as the on switch."""

ALWAYS_WRITTEN = ("method", "model", "solo", "fusion_selection", "mode", "regions")


def to_infotext(args: FusionArgs, model_title: str | None = None) -> dict[str, Any]:
    """Infotext pairs of an enabled fusion; ``model_title`` is the resolved checkpoint title."""
    if not args.enabled:
        return {}
    defaults = FusionArgs().dict()
    values = args.dict()
    values["regions"] = regions_json(args.regions)
    defaults["regions"] = regions_json([])
    if model_title:
        values["model"] = model_title
    used = ("method", *USED_BY[args.method])
    if not args.needs_fusion_checkpoint:
        used = tuple(field for field in used if field != "model")
    return {KEYS[field]: values[field] for field in used if field in ALWAYS_WRITTEN or values[field] != defaults[field]}


def from_infotext(params: dict[str, Any]) -> FusionArgs:
    """Arguments from parsed infotext (``parse_generation_parameters``); strings are converted."""
    if KEYS["method"] not in params:
        return FusionArgs()
    data: dict[str, Any] = {"enabled": True}
    for field, key in KEYS.items():
        if key in params:
            value = params[key]
            data[field] = _typed(field, value)
    return FusionArgs.parse(data)


def _typed(field: str, value: Any) -> Any:
    """Infotext values are text; give each field the type the argument model expects."""
    if field in INTEGER_FIELDS:
        return int(float(value))
    if field == "bootstrapping":
        return float(value)
    if field == "circular":
        if str(value).lower() not in ("true", "false"):
            raise ValueError(f"{KEYS[field]}: {value!r} is not True or False")
        return str(value).lower() == "true"
    return str(value)


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
