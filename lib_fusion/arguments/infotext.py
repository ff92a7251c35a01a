"""Fusion parameters in the image's infotext (``Key: value`` pairs) and back.

Options at their default are left out to keep the infotext short; a missing key reads
back as the default, and a missing ``Fusion`` key as "fusion off".
"""

from __future__ import annotations

import json
from typing import Any

from lib_fusion.arguments.args import FIELDS, FLAG_FIELDS, TITLE, FusionArgs, models_json, regions_json
from lib_fusion.arguments.fields import BOUNDS, INFOTEXT_KEYS, USED_BY
from lib_fusion.arguments.messages import cut, shown

STRIDE_USED = "Fusion stride used"
"""Written after sampling when the stride was ``auto``: the stride of each pass (first, hires);
read by nothing (the paste restores ``auto``)."""

ALWAYS_WRITTEN = ("method", "model", "solo", "fusion_selection", "mode", "regions", "guidance_weight")


def to_infotext(args: FusionArgs, model_title: str | None = None) -> dict[str, Any]:
    """Infotext pairs of an enabled fusion; ``model_title`` is the resolved checkpoint title."""
    if not args.enabled:
        return {}
    defaults = FusionArgs().dict()
    values = args.dict()
    values["regions"] = regions_json(args.regions)
    defaults["regions"] = regions_json([])
    values["models"] = models_json(args.models)
    defaults["models"] = models_json([])
    if model_title:
        values["model"] = model_title
    used = ("method", *USED_BY[args.method])
    if not args.needs_fusion_checkpoint:
        used = tuple(field for field in used if field != "model")
    written = {field: values[field] for field in used if field in ALWAYS_WRITTEN or values[field] != defaults[field]}
    return {INFOTEXT_KEYS[field]: _protected(value) if field in TEXT_FIELDS else value for field, value in written.items()}


TEXT_FIELDS = ("model", "prompt", "negative_prompt", "background")
"""Free text: any value must come back from a paste exactly as it was written."""


def _protected(text: str) -> str:
    """Text that a paste gives back unchanged. The WebUI quotes a value (JSON) only when it
    holds a comma, colon or line break; its paste reads a value from a quote to the next,
    unquotes it, strips spaces, and reads ``AxB`` as a size. So text the WebUI would leave
    bare but the paste would change (a quote in it, spaces at an end) is quoted here, which
    the WebUI's ``quote`` keeps and its paste undoes; ``64x64`` is rejoined by :func:`_value`."""
    if any(mark in text for mark in ",:\n"):
        return text
    if text != text.strip() or '"' in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _value(params: dict[str, Any], key: str) -> Any:
    """The pasted value of ``key``; the WebUI's paste splits ``AxB`` into ``key-1``/``key-2``."""
    if key in params:
        return params[key]
    if f"{key}-1" in params and f"{key}-2" in params:
        return f"{params[f'{key}-1']}x{params[f'{key}-2']}"
    return None


def from_infotext(params: dict[str, Any]) -> FusionArgs:
    """Arguments from parsed infotext (``parse_generation_parameters``); strings are converted.

    A value that cannot be read (``Fusion mode: 1e999``) is left out with a console line and
    the rest is kept; if the fusion as a whole still does not validate, fusion is off. Never
    raises: the WebUI's paste calls this without a guard, once per field."""
    try:
        if INFOTEXT_KEYS["method"] not in params:
            return FusionArgs()
        data: dict[str, Any] = {"enabled": True}
        for field, key in INFOTEXT_KEYS.items():
            value = _value(params, key)
            if value is None:
                continue
            try:
                data[field] = _typed(field, value)
                # Checked alone; models beside a model, or its first entry would stand in for it.
                FusionArgs.parse({field: data[field], **({"model": "checked alone"} if field == "models" else {})})
            except Exception as error:  # one unreadable value: paste the others
                data.pop(field, None)
                print(f"{TITLE}: infotext {key}: {shown(value)} is not pasted ({cut(str(error))})")
        return FusionArgs.for_generation(data)
    except Exception as error:
        print(f"{TITLE}: the infotext's fusion is not pasted ({cut(str(error))}); fusion is off")
        return FusionArgs()


def _typed(field: str, value: Any) -> Any:
    """Infotext values are text; give each field the type the argument model expects."""
    bound = BOUNDS.get(field)
    if bound is not None:
        if value in bound.also:  # a word the bound allows (stride: auto)
            return value
        number = float(value)
        if not bound.integer:
            return number
        if not number.is_integer():
            raise ValueError(f"{shown(value)} is not a whole number")
        return int(number)
    if field in FLAG_FIELDS:
        if str(value).lower() not in ("true", "false"):
            raise ValueError(f"{shown(value)} is not True or False")
        return str(value).lower() == "true"
    return str(value)


_last_paste: tuple[dict[str, Any], FusionArgs] | None = None
"""The WebUI pastes field by field from one ``params`` dict: it is read once, not per field."""


def paste_value(params: dict[str, Any], field: str) -> Any:
    """The UI value of ``field`` when an infotext is pasted (PNG Info -> Send to txt2img)."""
    global _last_paste
    if _last_paste is None or _last_paste[0] is not params:
        _last_paste = (params, from_infotext(params))
    return _last_paste[1].to_ui()[FIELDS.index(field)]


def strides_used(strides: list[int]) -> dict[str, str]:
    """The infotext pair naming the strides ``auto`` chose, in pass order, each once."""
    unique = list(dict.fromkeys(strides))
    return {STRIDE_USED: ", ".join(str(stride) for stride in unique)} if unique else {}
