"""The extension's section in the WebUI's Settings, and the values read from it."""

from __future__ import annotations

import math
from typing import Any

from modules import shared

from lib_fusion.arguments.args import TITLE, FusionArgs, FusionArgumentError
from lib_fusion.engine.checkpoint_cache import CACHE, FusionModelError
from lib_fusion.engine.run import FusionRun
from lib_fusion.host.checkpoints import resolve_checkpoint
from lib_fusion.host.loading import Held, give_back_memory, unload

KEEP_LOADED = "model_fusion_keep_loaded"


PREVIEW_STEPS = "model_fusion_preview_steps"


MAX_MODELS = "model_fusion_max_models"


DEFAULT_MODEL = "model_fusion_default_model"


DEFAULT_SELECTION = "model_fusion_default_selection"


DEFAULT_MODE = "model_fusion_default_mode"


SECTION = ("model_fusion", TITLE)


def add_settings() -> None:
    """``on_ui_settings``: the extension's section in Settings (the WebUI picks each
    control from the default's type: checkbox, number, text)."""

    def option(key: str, default: Any, label: str, onchange: Any = None, **component_args: Any) -> None:
        info = shared.OptionInfo(default, label, component_args=component_args or None, onchange=onchange, section=SECTION)
        shared.opts.add_option(key, info)

    option(KEEP_LOADED, True, "Keep the fusion checkpoint loaded between generations (off: free its memory after each one)")
    option(
        MAX_MODELS,
        1,
        "Checkpoints besides the active one kept in memory for fusion (1-8; least recently used freed first; a generation "
        "needing more is refused). In fp16 an SD1.5 UNet takes about 1.7 GB, an SDXL UNet 5.1 GB",
        onchange=_shrink_cache,
        minimum=1,
        maximum=8,
        precision=0,
    )
    option(PREVIEW_STEPS, 3, "Preview: fused steps shown per image, first to last (1-10)", minimum=1, maximum=10, precision=0)
    option(DEFAULT_MODEL, "", "Default fusion checkpoint in the accordion (title or name; applies after Reload UI)")
    option(DEFAULT_SELECTION, "600,1,1", "Default fusion_selection v1,kg,ke in the accordion (applies after Reload UI)")
    option(DEFAULT_MODE, 2, "Default mode in the accordion: 0, 1 or 2 (applies after Reload UI)", minimum=0, maximum=2, precision=0)


def setting(key: str, default: Any) -> Any:
    """A setting's value (the default before ``on_ui_settings`` has run)."""
    return getattr(shared.opts, key, default)


def ui_defaults() -> FusionArgs:
    """The accordion's first values: the official defaults with the Settings' choices."""
    model = str(setting(DEFAULT_MODEL, "")).strip()
    values = {"fusion_selection": setting(DEFAULT_SELECTION, "600,1,1"), "mode": setting(DEFAULT_MODE, 2)}
    try:
        values["mode"] = int(values["mode"])
        if model:
            values["model"] = resolve_checkpoint(model).title
        return FusionArgs.parse(values)
    except (FusionArgumentError, FusionModelError, TypeError, ValueError) as error:
        print(f"{TITLE}: the default settings are not used: {error}")
        return FusionArgs()


def max_models() -> int:
    """How many checkpoints besides the active one the fusion may hold (Settings), 1 to 8."""
    return _bounded_setting(MAX_MODELS, 1, 1, 8)


def preview_steps() -> int:
    """How many fused steps a preview shows (Settings), within 1 to 10."""
    return _bounded_setting(PREVIEW_STEPS, 3, 1, 10)


def _bounded_setting(key: str, default: int, low: int, high: int) -> int:
    """A whole-number setting clamped to [low, high]; the options API and config.json take any
    JSON number (±Infinity clamps to an end; NaN and non-numbers give the default)."""
    try:
        value = float(setting(key, default))
    except (TypeError, ValueError):
        return default
    return default if math.isnan(value) else int(max(low, min(high, value)))


def _shrink_cache() -> None:
    """A lowered budget frees memory now, not at the next fusion."""
    CACHE.shrink(max_models())
    give_back_memory()


def release(run: FusionRun, held: Held | None) -> None:
    """The run lets go of its tensors and the host of the generation's models; the cache too
    unless the settings keep them loaded."""
    run.release()
    if held is not None:
        held.release()
    if not setting(KEEP_LOADED, True):
        unload()
