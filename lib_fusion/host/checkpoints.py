"""The WebUI's checkpoints as the extension sees them: listing, lookup, the family check
from weight shapes (safetensors headers alone for the listing), the active model's config."""

from __future__ import annotations

import functools
import os
from typing import Any

from modules import sd_models, shared

from lib_fusion.args import TITLE
from lib_fusion.echo import cut, shown
from lib_fusion.models import FusionModelError, Shapes, family_mismatch

UNET_PREFIX = "model.diffusion_model."


TEXT_ENCODER_PREFIX = "cond_stage_model."


def checkpoint_titles() -> list[str]:
    """Titles of the WebUI's checkpoints, as its own dropdown lists them."""
    return sorted(sd_models.checkpoints_list, key=str.lower)


def refresh_checkpoints() -> list[str]:
    sd_models.list_models()
    return checkpoint_titles()


def resolve_checkpoint(name: str) -> Any:
    """The WebUI's own lookup (title, name or hash); only listed checkpoints, no paths."""
    info = sd_models.get_closet_checkpoint_match(name)
    if info is None:
        known = ", ".join(checkpoint_titles()[:8]) or "none found"
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(name)} is not in the WebUI's checkpoint list "
            f"(give a title, name or hash; refresh the list after adding files). Known: {known}"
        )
    return info


def checkpoint_report() -> list[dict[str, Any]]:
    """Each listed checkpoint and whether it can fuse with the active one, judged from the
    safetensors header alone (no weights read); a ``.ckpt`` is judged when it loads."""
    active = _shapes(shared.sd_model.model.diffusion_model.state_dict())
    report = []
    for title in checkpoint_titles():
        info = sd_models.checkpoints_list[title]
        if is_active_checkpoint(info):
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
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ == "xyz_grid.py":
            return data.module
    return None


UNSUPPORTED_HOST = (
    f"{TITLE}: this WebUI runs its models through another backend than AUTOMATIC1111 1.10's (Forge's), where fusing "
    "is not supported yet; turn Model Fusion off here, or fuse in AUTOMATIC1111 1.10"
)


def unsupported_host() -> str | None:
    """Why this WebUI cannot fuse, judged by what its model offers (never by a version tag):
    the fusion hooks need AUTOMATIC1111 1.10's ldm model (``model.diffusion_model``, its
    config) and sampler; Forge's backend model has ``forge_objects`` instead. None: supported."""
    model = getattr(shared, "sd_model", None)
    if model is None:
        return None  # no model loaded yet: the WebUI says so itself
    if hasattr(model, "forge_objects") or not hasattr(getattr(model, "model", None), "diffusion_model"):
        return UNSUPPORTED_HOST
    return None


def is_active_checkpoint(info: Any) -> bool:
    active = getattr(shared.sd_model, "sd_checkpoint_info", None)
    return active is not None and active.filename == info.filename


def native_window() -> int:
    """The active model's training size in latent pixels: 128 for SDXL, 64 for SD1/SD2."""
    return 128 if getattr(shared.sd_model, "is_sdxl", False) else 64


def active_config() -> Any:
    from omegaconf import OmegaConf

    config = OmegaConf.load(shared.sd_model.used_config)
    sd_models.repair_config(config)
    return config


def with_prefix(state_dict: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def check_family(info: Any, weights: dict, active: dict) -> None:
    """Refuse another architecture (SD1 vs SD2 vs SDXL, inpainting vs plain) by weight shapes."""
    reason = family_mismatch(_shapes(weights), _shapes(active))
    if reason is not None:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {info.title!r} is not of the active checkpoint's family "
            f"({shared.sd_model.used_config}): {reason}. Choose a checkpoint of the same family (SD1 with SD1, SDXL with SDXL)."
        )


def _shapes(weights: dict) -> Shapes:
    return {key: tuple(value.shape) for key, value in weights.items()}


def without_path(text: str, info: Any) -> str:
    """``text`` (an error from a reader) with the checkpoint's file path replaced by its title,
    also as ``repr`` writes it (doubled backslashes on Windows), and cut short: answers and
    messages name checkpoints, never where the WebUI keeps them."""
    for form in (info.filename, repr(info.filename)[1:-1], os.path.basename(info.filename)):
        text = text.replace(form, info.title)
    return cut(text)
