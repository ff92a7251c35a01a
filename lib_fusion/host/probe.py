"""What this WebUI offers, asked at the moment it is needed, never at import time.

The script imports only what every WebUI that runs scripts has (``modules.shared``,
``modules.scripts``, ``modules.script_callbacks``); every other module of the host is reached
through :func:`host_module` when a generation, the accordion or a route needs it. A WebUI
that lacks one (Forge Neo removed ``sd_hijack``, ``sd_disable_initialization`` and
``sd_models_xl``) therefore still lists the script and runs fusion off untouched, and an
enabled fusion that needs the missing module is told so in the extension's words.

The host family is recognised the same way, by what its model and backend offer
(``forge_objects``, ``model.diffusion_model``, the Forge patcher's hook names), never by a
version tag: Forge Neo's ``git_tag()`` reads "neo …" and changes with every release.
(docs: ``docs/hosts.md``)
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any, Callable

from modules import shared

from lib_fusion.arguments.args import TITLE


class HostError(ValueError):
    """This WebUI lacks something the fusion needs: the message names it and what works."""


def host_module(name: str, needed_for: str = "") -> ModuleType:
    """The host's module ``name`` (``modules.*`` or Forge's ``backend.*``), imported now.
    A WebUI without it fails the fusion with a message naming the module (and ``needed_for``,
    where the module is not needed by every fusion)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        absent = isinstance(error, ModuleNotFoundError) and error.name == name  # not a module it imports in turn
        raise HostError(
            f"{TITLE}: this WebUI has no {name}{'' if absent else f' ({error.msg})'}, which the fusion needs"
            f"{' ' + needed_for if needed_for else ''}; turn Model Fusion off here (generation without it is unaffected)"
        ) from None


def runs_forge() -> bool:
    """The active model is a Forge-family engine (Forge, Forge Neo: its parts in ``forge_objects``)."""
    return hasattr(getattr(shared, "sd_model", None), "forge_objects")


def model_loaded() -> bool:
    """The WebUI has a model with a UNet: Forge holds a placeholder until its first generation."""
    model = getattr(shared, "sd_model", None)
    return model is not None and (runs_forge() or hasattr(model, "model"))


UNSUPPORTED_HOST = (
    f"{TITLE}: this WebUI runs its models through a backend the fusion does not know (neither AUTOMATIC1111 1.10's "
    "nor Forge's); turn Model Fusion off here, or fuse in AUTOMATIC1111 1.10, Forge or Forge Neo"
)


FORGE_HOOKS = ("clone", "add_conditioning_modifier", "set_model_sampler_post_cfg_function", "add_extra_model_patcher_during_sampling")
"""What the fusion calls on a Forge-family UNet patcher (Forge main and Neo both have them)."""


FORGE_FUNCTIONS = (
    ("backend.sampling.sampling_function", "calc_cond_uncond_batch"),
    ("backend.sampling.condition", "compile_conditions"),
    ("backend.sampling.condition", "Condition"),
)
"""What the fusion calls in Forge's sampling code."""


def missing_forge_hooks() -> str | None:
    """What this Forge-family host lacks of the hooks the fusion uses (None: all there).
    Forge main and Neo keep them; reForge's ComfyUI-style backend does not."""
    backend = {}
    for name in ("backend.sampling.condition", "backend.sampling.sampling_function"):
        try:
            backend[name] = importlib.import_module(name)
        except ImportError:
            return f"its backend has no {name} (a reForge/ComfyUI-style backend)"
    unet = getattr(getattr(shared.sd_model, "forge_objects", None), "unet", None)
    for name in FORGE_HOOKS:
        if not hasattr(unet, name):
            return f"its UNet patcher has no {name}()"
    for module, name in FORGE_FUNCTIONS:
        if not hasattr(backend[module], name):
            return f"its backend has no {module}.{name}"
    return None


def unsupported_host() -> str | None:
    """Why this WebUI cannot fuse, judged by what its model and backend offer: AUTOMATIC1111
    1.10's ldm model (``model.diffusion_model``), or a Forge engine whose backend has the hooks
    the fusion uses. None: supported, or no model loaded yet (checked again at generation)."""
    if not model_loaded():
        return None
    if runs_forge():
        missing = missing_forge_hooks()
        if missing is not None:
            return f"{TITLE}: this Forge-family WebUI cannot fuse: {missing}; turn Model Fusion off here"
        return unsupported_model(shared.sd_model.forge_objects.unet.model.predictor)
    if not hasattr(getattr(shared.sd_model, "model", None), "diffusion_model"):
        return UNSUPPORTED_HOST
    if getattr(shared.sd_model, "create_denoiser", None) is not None:  # AUTOMATIC1111's SD3: a flow denoiser of its own
        return unsupported_model(None)
    return None


def unsupported_model(predictor: Any) -> str | None:
    """Why the active checkpoint's family cannot be fused, or None. The fusion reads the
    predictions of the families whose noisy latent is ``x0 + sigma * noise`` (SD1, SD2, SDXL:
    eps, v and EDM alike) or ``(1 - sigma) x0 + sigma * noise`` (the rectified flows Forge Neo
    runs: Flux, Chroma, Lumina, Z-Image, Qwen-Image …), as Forge's ``predictor.noise_scaling``
    computes them (:func:`noise_form`). ``predictor`` None: the host's model brings a sampler
    denoiser of its own (AUTOMATIC1111's SD3), which the fusion does not drive."""
    if predictor is not None and noise_form(predictor) is not None:
        return None
    family = type(shared.sd_model).__name__
    if predictor is None:
        return (
            f"{TITLE}: the active checkpoint ({family}) brings a sampler of its own, which this WebUI's fusion does not "
            "drive (AUTOMATIC1111 fuses SD1, SD2 and SDXL); fuse it in Forge Neo, or turn Model Fusion off for this "
            "checkpoint (generation without it is unaffected)"
        )
    return (
        f"{TITLE}: the active checkpoint ({family}) noises its latent in a way the fusion does not know (neither as the "
        "Stable Diffusion families nor as a rectified flow); load another checkpoint to fuse, or turn Model Fusion off "
        "for this checkpoint (generation without it is unaffected)"
    )


def active_is_flow() -> bool:
    """The active checkpoint is a rectified flow run by a Forge-family host (:func:`noise_form`)."""
    return runs_forge() and noise_form(shared.sd_model.forge_objects.unet.model.predictor) == "flow"


def noise_form(predictor: Any) -> str | None:
    """How a Forge predictor noises a clean latent, tried on one value (exact in floats):
    ``"sd"`` for ``x0 + sigma * noise``, ``"flow"`` for ``(1 - sigma) x0 + sigma * noise``,
    None for anything else."""
    import torch

    one = torch.ones(1, 1, 1, 1)
    try:
        noised = predictor.noise_scaling(torch.full((1, 1, 1, 1), 0.5), one, one * 2)
    except Exception:  # a predictor of another shape: not one of the families the fusion knows
        return None
    forms = {2.5: "sd", 1.5: "flow"}  # 2 + 0.5 * 1, and 0.5 * 2 + 0.5 * 1
    return next((form for value, form in forms.items() if torch.equal(noised, one * value)), None)


def call_with_accepted(function: Callable[..., Any], *args: Any, **optional: Any) -> Any:
    """``function(*args, **optional)`` passing only the optional keywords its signature takes:
    AUTOMATIC1111's and Forge's prompt parser take ``use_old_scheduling``, Neo's does not."""
    parameters = inspect.signature(function).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    return function(*args, **{key: value for key, value in optional.items() if takes_any or key in parameters})
