"""The WebUI's checkpoints as the extension sees them: listing, lookup, the family check
from weight shapes (safetensors headers alone for the listing), the active model's config."""

from __future__ import annotations

import functools
import os
from typing import Any

from modules import shared

from lib_fusion.arguments.args import TITLE
from lib_fusion.arguments.messages import cut, shown
from lib_fusion.engine.checkpoint_cache import FusionModelError, Shapes, family_mismatch
from lib_fusion.engine.region_pass import ModelWindow
from lib_fusion.host.probe import host_module, model_loaded, runs_forge

UNET_PREFIX = "model.diffusion_model."


TEXT_ENCODER_PREFIX = "cond_stage_model."
SDXL_TEXT_ENCODER_PREFIX = "conditioner."


def _sd_models() -> Any:
    return host_module("modules.sd_models", "to list, find and read checkpoints")


def checkpoint_titles() -> list[str]:
    """Titles of the WebUI's checkpoints, as its own dropdown lists them."""
    return sorted(_sd_models().checkpoints_list, key=str.lower)


def refresh_checkpoints() -> list[str]:
    _sd_models().list_models()
    return checkpoint_titles()


def resolve_checkpoint(name: str) -> Any:
    """The WebUI's own lookup (title, name or hash); only listed checkpoints, no paths."""
    info = _sd_models().get_closet_checkpoint_match(name)
    if info is None:
        known = ", ".join(checkpoint_titles()[:8]) or "none found"
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(name)} is not in the WebUI's checkpoint list "
            f"(give a title, name or hash; refresh the list after adding files). Known: {known}"
        )
    return info


def resolve_at(name: str, place: str) -> Any:
    """:func:`resolve_checkpoint` for a checkpoint given at ``place`` (``regions[1].model``):
    a failure names the place."""
    try:
        return resolve_checkpoint(name)
    except FusionModelError as error:
        raise error.at(place) from None


def checkpoint_report() -> list[dict[str, Any]]:
    """Each listed checkpoint and whether it can fuse with the active one, judged from the
    safetensors header alone (no weights read); a ``.ckpt`` is judged when it loads."""
    active = _shapes(active_unet().state_dict()) if model_loaded() else None
    report = []
    for title in checkpoint_titles():
        info = _sd_models().checkpoints_list[title]
        if active is None:
            usable, reason = None, "judged once the WebUI has loaded its model (Forge loads it at the first generation)"
        elif is_active_checkpoint(info):
            usable, reason = True, "the active checkpoint (fuses with a fusion prompt of its own)"
        elif not info.filename.endswith(".safetensors"):
            usable, reason = None, "a .ckpt is checked when it loads"
        else:
            try:
                mismatch = family_mismatch(_header_shapes(info.filename), active)
            except Exception as error:  # a broken file: say so rather than fail the listing (its path stays private)
                usable, reason = False, f"unreadable: {without_path(str(error), info)}"
            else:
                usable, reason = mismatch is None, mismatch
        report.append({"title": title, "name": info.model_name, "usable": usable, "reason": reason})
    return report


def active_title() -> str:
    """The active checkpoint's title ("" before a model is loaded)."""
    info = getattr(shared.sd_model, "sd_checkpoint_info", None)
    return getattr(info, "title", "") or ""


def fusable_titles() -> tuple[list[str], list[tuple[str, str]]]:
    """The checkpoints the fusion dropdown offers (those that can fuse with the active one, or
    that only loading can judge) and those it leaves out, each with why."""
    try:
        report = checkpoint_report()
    except Exception:  # no active model yet: offer the whole list
        return checkpoint_titles(), []
    offered = [entry["title"] for entry in report if entry["usable"] is not False]
    left_out = [(entry["title"], str(entry["reason"])) for entry in report if entry["usable"] is False]
    return offered, left_out


@functools.lru_cache(maxsize=256)
def _header_shapes_of(filename: str, mtime_ns: int, size: int) -> Shapes:
    from safetensors import safe_open

    with safe_open(filename, framework="pt") as handle:
        return {key[len(UNET_PREFIX) :]: tuple(handle.get_slice(key).get_shape()) for key in handle.keys() if key.startswith(UNET_PREFIX)}


def _header_shapes(filename: str) -> Shapes:
    stat = os.stat(filename)
    return _header_shapes_of(filename, stat.st_mtime_ns, stat.st_size)


def api_access() -> tuple[bool, str | None]:
    """Whether the WebUI serves its API (``--api``, or ``--nowebui`` which serves only it), and
    its ``--api-auth`` credentials (None: the API is open)."""
    options = shared.cmd_opts
    serves = bool(getattr(options, "api", False) or getattr(options, "nowebui", False))
    return serves, getattr(options, "api_auth", None) or None


def xyz_grid_module() -> Any:
    """The loaded ``scripts/xyz_grid.py`` (None when it is disabled), found as the WebUI's own
    extensions find it."""
    for data in host_module("modules.scripts").scripts_data:
        if data.script_class.__module__ == "xyz_grid.py":
            return data.module
    return None


def active_unet() -> Any:
    """The active model's UNet module, on either host family."""
    model = shared.sd_model
    if runs_forge():
        return model.forge_objects.unet.model.diffusion_model
    return model.model.diffusion_model


def is_active_checkpoint(info: Any) -> bool:
    active = getattr(shared.sd_model, "sd_checkpoint_info", None)
    return active is not None and active.filename == info.filename


def model_window() -> ModelWindow:
    """The active model's window: its training size in latent pixels (64 for SD1/SD2; 128 for
    SDXL and for the Forge family's other engines, the DiTs trained at 1024 pixels), and the
    patch its transformer reads as one token (``patch_size``; 1 for a UNet)."""
    model = shared.sd_model
    legacy = getattr(model, "is_webui_legacy_model", None)
    native = 128 if getattr(model, "is_sdxl", False) or (callable(legacy) and not legacy()) else 64
    return ModelWindow(native, _patch_size(active_unet()))


def _patch_size(unet: Any) -> int:
    """The latent pixels a DiT reads as one token along a side, by the names Neo's families give
    it (``patch_size``; Anima's ``patch_spatial``; Krea's ``patch``; Nunchaku's Flux in its
    ``config``); 1 for a UNet."""
    config = getattr(unet, "config", None)
    candidates = [getattr(unet, name, None) for name in ("patch_size", "patch_spatial", "patch")]
    candidates.append(config.get("patch_size") if isinstance(config, dict) else None)
    for patch in candidates:
        patch = patch[-1] if isinstance(patch, (tuple, list)) and patch else patch  # Wan's (1, 2, 2): frames, rows, columns
        if isinstance(patch, int) and not isinstance(patch, bool) and patch >= 1:
            return patch
    return 1


def active_config() -> Any:
    from omegaconf import OmegaConf

    config = OmegaConf.load(shared.sd_model.used_config)
    _sd_models().repair_config(config)
    return config


def with_prefix(state_dict: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def check_family(info: Any, weights: dict, active: dict) -> None:
    """Refuse another architecture (SD1 vs SD2 vs SDXL, inpainting vs plain) by weight shapes."""
    _check_shapes(info, _shapes(weights), _shapes(active))


def _check_shapes(info: Any, shapes: Shapes, active: Shapes) -> None:
    reason = family_mismatch(shapes, active)
    if reason is not None:
        family = getattr(shared.sd_model, "used_config", None) or type(shared.sd_model).__name__
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {info.title!r} is not of the active checkpoint's family "
            f"({family}): {reason}. Choose a checkpoint of the same family (SD1 with SD1, SDXL with SDXL)."
        )


FLOATING = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
"""safetensors' names of the floating dtypes."""


def check_header(info: Any) -> None:
    """Judge a ``.safetensors`` fusion checkpoint from its header alone, before a loader reads
    it whole (Forge): readable, of the active family, floating-point UNet weights."""
    if not info.filename.lower().endswith(".safetensors"):
        return
    from safetensors import safe_open

    try:
        with safe_open(info.filename, framework="pt") as handle:
            slices = {key[len(UNET_PREFIX) :]: handle.get_slice(key) for key in handle.keys() if key.startswith(UNET_PREFIX)}
            shapes = {key: tuple(piece.get_shape()) for key, piece in slices.items()}
            dtypes = {key: piece.get_dtype() for key, piece in slices.items()}
    except Exception as error:  # safetensors' own words name neither the file nor a fix
        raise FusionModelError(f"{TITLE}: cannot read fusion checkpoint {info.title!r}: {without_path(str(error), info)}") from error
    _check_shapes(info, shapes, _shapes(active_unet().state_dict()))
    bad = sorted(key for key, dtype in dtypes.items() if dtype not in FLOATING)
    if bad:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(info.title)} holds {len(bad)} UNet weights that are not floating point "
            f"(e.g. {bad[0]}: {_torch_dtype_name(dtypes[bad[0]])}); it is not a usable Stable Diffusion checkpoint"
        )


def _torch_dtype_name(dtype: str) -> str:
    names = {"I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8", "BOOL": "bool"}
    return f"torch.{names.get(dtype, dtype)}"


def _shapes(weights: dict) -> Shapes:
    return {key: tuple(value.shape) for key, value in weights.items()}


def without_path(text: str, info: Any) -> str:
    """``text`` (an error from a reader) with the checkpoint's file path replaced by its title,
    also as ``repr`` writes it (doubled backslashes on Windows), and cut short: answers and
    messages name checkpoints, never where the WebUI keeps them."""
    for form in (info.filename, repr(info.filename)[1:-1], os.path.basename(info.filename)):
        text = text.replace(form, info.title)
    return cut(text)
