"""The one module that touches the WebUI's internals (AUTOMATIC1111 1.10.x, ``modules.*``).

Contract (see docs/webui-host.md of the project): the host swallows exceptions raised in
script hooks and callbacks, so everything that can fail runs inside the sampling call
path: in a wrapper around ``p.sample`` (arguments, model loading) or in the wrapped inner
model of the sampler's ``CFGDenoiser`` (prompt encoding, the model passes). Hooks live only
while ``p.sample`` runs and are removed in its ``finally``: errors and interrupts included.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from modules import devices, extra_networks, prompt_parser, script_callbacks, sd_disable_initialization, sd_models, shared

from lib_fusion import masks, outputs, pictures
from lib_fusion import multidiffusion as md
from lib_fusion.args import TITLE, TWO_MODEL_METHODS, USED_BY, FusionArgs, FusionArgumentError
from lib_fusion.conds import Cond
from lib_fusion.denoise import Conditioning
from lib_fusion.echo import cut, shown
from lib_fusion.infotext import KEYS, to_infotext
from lib_fusion.models import CACHE, CacheKey, FusionModelError, Shapes, family_mismatch
from lib_fusion.run import ACTIVE, FUSED, FUSION, FusionRun, HostStep, RegionSource, SamplingPass

INFOTEXT_KEYS = frozenset(KEYS.values())
UNET_PREFIX = "model.diffusion_model."
TEXT_ENCODER_PREFIX = "cond_stage_model."
RUN_ATTRIBUTE = "model_fusion_run"
_WRAPPED_MARK = "__model_fusion_wrapper__"


# -- checkpoints ------------------------------------------------------------------------
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
                usable, reason = False, f"unreadable: {cut(str(error).replace(info.filename, info.title))}"
            else:
                usable, reason = mismatch is None, mismatch
        report.append({"title": title, "name": info.model_name, "usable": usable, "reason": reason})
    return report


def loaded_report() -> dict[str, Any] | None:
    """The cached fusion checkpoint (title, parts, seconds its load took), or None."""
    model: FusionModel | None = CACHE.value
    if model is None:
        return None
    parts = ["unet"] + (["text_encoder"] if model.text_encoder is not None else [])
    return {"title": model.title, "parts": parts, "load_seconds": round(CACHE.load_seconds or 0.0, 3)}


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


def is_active_checkpoint(info: Any) -> bool:
    active = getattr(shared.sd_model, "sd_checkpoint_info", None)
    return active is not None and active.filename == info.filename


@dataclass
class FusionModel:
    """The secondary checkpoint's parts: a UNet, and a text encoder when one is needed."""

    title: str
    unet: torch.nn.Module | None
    """None: the fusion checkpoint is the active one, whose UNet is reused."""
    text_encoder: Any = None


def load_fusion_model(info: Any, need_text_encoder: bool) -> FusionModel:
    """Cached secondary model; built without touching ``shared.sd_model``."""
    if is_active_checkpoint(info):
        return FusionModel(info.title, None, None)
    parts = ("unet", "text_encoder") if need_text_encoder else ("unet",)
    try:  # size and mtime: a file rewritten since it was cached is loaded again
        key = CacheKey.for_file(info.filename, str(shared.sd_model.used_config), parts)
    except OSError as error:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(info.title)} cannot be read from disk ({error.strerror or error}); "
            "it was moved or deleted: refresh the checkpoint list and choose another"
        ) from None
    return CACHE.get(key, lambda: _build(info, need_text_encoder))


def _build(info: Any, need_text_encoder: bool) -> FusionModel:
    try:
        state_dict = _read_weights(info.filename, need_text_encoder)
    except Exception as error:  # safetensors/unpickler errors name neither the file nor a fix
        raise FusionModelError(f"{TITLE}: cannot read fusion checkpoint {info.title!r} ({info.filename}): {cut(str(error))}") from error
    config = _active_config()
    unet_weights = _with_prefix(state_dict, UNET_PREFIX)
    _check_family(info, unet_weights, shared.sd_model.model.diffusion_model.state_dict())
    _check_floating(info, unet_weights)
    unet_config = config.model.params.get("unet_config") or config.model.params.get("network_config")
    unet = _instantiate_with(unet_config, unet_weights)
    unet = _owning(unet.to(_home(), dtype=devices.dtype_unet).eval().requires_grad_(False), state_dict)
    text_encoder = _build_text_encoder(info, config, state_dict) if need_text_encoder else None
    return FusionModel(info.title, unet, text_encoder)


def _owning(module: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """``module`` with no tensor left in the memory of ``state_dict``: a ``.safetensors`` is
    read as a memory map of the file, and a UNet kept on the CPU in the file's dtype would
    otherwise be that map (rewriting the file would change the cached model, truncating it
    would kill the WebUI with SIGBUS). Tensors the move to the device or dtype copied
    already are left alone."""
    mapped = {tensor.untyped_storage().data_ptr() for tensor in state_dict.values() if isinstance(tensor, torch.Tensor)}
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type == "cpu" and tensor.untyped_storage().data_ptr() in mapped:
            tensor.data = tensor.data.clone()
    return module


def _check_floating(info: Any, weights: dict) -> None:
    """A UNet of integer tensors would fail inside the first step with torch's own words."""
    bad = sorted(key for key, value in weights.items() if not value.is_floating_point())
    if bad:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(info.title)} holds {len(bad)} UNet weights that are not floating point "
            f"(e.g. {bad[0]}: {weights[bad[0]].dtype}); it is not a usable Stable Diffusion checkpoint"
        )


def _read_weights(filename: str, need_text_encoder: bool) -> dict:
    """The checkpoint's weights: of a ``.safetensors`` only the UNet's when that is all the
    fusion needs (no text encoder or VAE read); otherwise the WebUI's own reader."""
    if need_text_encoder or not filename.lower().endswith(".safetensors"):
        return sd_models.read_state_dict(filename, map_location="cpu")
    from safetensors import safe_open

    with safe_open(filename, framework="pt", device="cpu") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(UNET_PREFIX)}


def _instantiate_with(config: Any, weights: dict) -> torch.nn.Module:
    """The UNet built on the meta device and given the loaded tensors themselves (as the
    WebUI builds its own model): no memory allocated, zeroed and overwritten."""
    with sd_disable_initialization.DisableInitialization(disable_clip=False), torch.device("meta"):
        module = sd_models.instantiate_from_config(config)
    module.load_state_dict(weights, strict=True, assign=True)
    left = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if left:  # a buffer the checkpoint does not hold: build it the plain way
        with sd_disable_initialization.DisableInitialization(disable_clip=False):
            module = sd_models.instantiate_from_config(config)
        module.load_state_dict(weights, strict=True)
    return module


# -- where the fusion model lives ------------------------------------------------------
def _offload() -> str:
    """The WebUI's memory policy, applied to the fusion model: "none" (stays on the device),
    "idle" (``--medvram``/``--medvram-sdxl``: on the device while sampling, on the CPU
    between generations) or "call" (``--lowvram``: on the device only during each call)."""
    from modules import lowvram

    if not lowvram.is_needed(shared.sd_model):
        return "none"
    return "call" if shared.cmd_opts.lowvram else "idle"


def _home() -> torch.device:
    """Where the fusion model waits between uses."""
    return devices.device if _offload() == "none" else devices.cpu


def _resident(module: torch.nn.Module | None) -> contextlib.AbstractContextManager[None]:
    """``--lowvram``: ``module`` on the device for one call only."""
    return _on_device_under("call", module)


def _sampling_residency(model: FusionModel | None) -> contextlib.AbstractContextManager[None]:
    """``--medvram``: the fusion model on the device for one generation's sampling only."""
    return _on_device_under("idle", *((model.unet, model.text_encoder) if model is not None else ()))


@contextlib.contextmanager
def _on_device_under(policy: str, *modules: torch.nn.Module | None) -> Iterator[None]:
    """Move ``modules`` to the device and back to the CPU around the block, when the
    WebUI's memory policy (:func:`_offload`) is ``policy``; otherwise they stay where they are."""
    parts = [module for module in modules if module is not None]
    if not parts or _offload() != policy:
        yield
        return
    for part in parts:
        part.to(devices.device)
    try:
        yield
    finally:
        for part in parts:
            part.to(devices.cpu)


def _active_config() -> Any:
    from omegaconf import OmegaConf

    config = OmegaConf.load(shared.sd_model.used_config)
    sd_models.repair_config(config)
    return config


def _with_prefix(state_dict: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def _check_family(info: Any, weights: dict, active: dict) -> None:
    """Refuse another architecture (SD1 vs SD2 vs SDXL, inpainting vs plain) by weight shapes."""
    reason = family_mismatch(_shapes(weights), _shapes(active))
    if reason is not None:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {info.title!r} is not of the active checkpoint's family "
            f"({shared.sd_model.used_config}): {reason}. Choose a checkpoint of the same family (SD1 with SD1, SDXL with SDXL)."
        )


def _shapes(weights: dict) -> Shapes:
    return {key: tuple(value.shape) for key, value in weights.items()}


def _build_text_encoder(info: Any, config: Any, state_dict: dict) -> Any:
    """A second text encoder, wrapped like the host wraps its own (emphasis, BREAK, embeddings)."""
    from modules import sd_hijack, sd_hijack_clip

    with sd_disable_initialization.DisableInitialization(disable_clip=True):
        encoder = sd_models.instantiate_from_config(config.model.params.cond_stage_config)
    if type(encoder).__name__ != "FrozenCLIPEmbedder":
        raise FusionModelError(
            f"{TITLE}: text_encoder='own' supports SD1 (CLIP ViT-L) checkpoints for now; "
            f"{info.title!r} uses {type(encoder).__name__}. Use text_encoder='solo'."
        )
    encoder.load_state_dict(_with_prefix(state_dict, TEXT_ENCODER_PREFIX), strict=False)
    encoder = _owning(encoder.to(_home(), dtype=devices.dtype).eval().requires_grad_(False), state_dict)
    embeddings = encoder.transformer.text_model.embeddings
    embeddings.token_embedding = sd_hijack.EmbeddingsWithFixes(embeddings.token_embedding, sd_hijack.model_hijack)
    return sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(encoder, sd_hijack.model_hijack)


class _EncoderModel:
    """What ``prompt_parser`` needs of a model: ``get_learned_conditioning(texts)``."""

    def __init__(self, text_encoder: Any) -> None:
        self.text_encoder = text_encoder

    def get_learned_conditioning(self, texts: Any) -> Any:
        with _resident(self.text_encoder):
            return self.text_encoder(texts)


class _UNetModel:
    """``apply_model`` of the host model (ldm ``DiffusionWrapper`` / sgm wrapper) over another UNet."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.alphas_cumprod = shared.sd_model.alphas_cumprod
        self.device = self.alphas_cumprod.device  # the LCM denoiser builds its schedule there
        self.conditioning_key = getattr(getattr(shared.sd_model, "model", None), "conditioning_key", "crossattn")

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        with _resident(self.unet):
            return self._apply(x, t, cond)

    def _apply(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        if "crossattn" in cond:  # SDXL (sgm): the WebUI's apply_model, then OpenAIWrapper
            if getattr(shared.sd_model, "is_sdxl_inpaint", False):
                x = torch.cat([x, *cond["c_concat"]], dim=1)
            concat = cond.get("concat")
            x = torch.cat([x, concat], dim=1) if concat is not None else x
            return self.unet(x, t, context=cond["crossattn"], y=cond.get("vector"))
        context = torch.cat(cond["c_crossattn"], 1)
        if self.conditioning_key == "hybrid":
            return self.unet(torch.cat([x, *cond["c_concat"]], dim=1), t, context=context)
        if self.conditioning_key == "crossattn-adm":
            return self.unet(x, t, context=context, y=cond["c_adm"])
        return self.unet(x, t, context=context)


# -- one generation ---------------------------------------------------------------------
def start(p: Any, args: FusionArgs) -> FusionRun | None:
    """``Script.process``: validate, note the infotext, wrap ``p.sample``. Never raises."""
    _unwrap_sample(p)
    _write_infotext(p, {})
    if not args.enabled:
        return None
    run = FusionRun(args)
    run.preview_steps = preview_steps()
    try:
        _check_host(p, args)
        if args.needs_fusion_checkpoint:
            run.model_info = resolve_checkpoint(args.model)
            _check_not_a_copy_of_the_active(p, args, run.model_info)
        if args.method == "regions":
            run.region_images = _region_images(p, args)
            args = run.args = _with_canonical_masks(args, run.region_images)
        _write_infotext(p, to_infotext(args, run.model_info.title if run.model_info else None))
    except Exception as error:  # reported by the p.sample wrapper, where the host does not swallow it
        run.error = error
    setattr(p, RUN_ATTRIBUTE, run)
    _wrap_sample(p, run)
    return run


def _write_infotext(p: Any, entries: dict[str, Any]) -> None:
    """This generation's fusion keys in a dict of p's own: the X/Y/Z plot's cells share one
    dict through their shallow copies, and a cell must not inherit another cell's fusion."""
    kept = {key: value for key, value in p.extra_generation_params.items() if key not in INFOTEXT_KEYS}
    p.extra_generation_params = {**kept, **entries}


def start_with_error(p: Any, error: Exception) -> None:
    """Arguments that did not even parse: fail the generation from ``p.sample``."""
    _unwrap_sample(p)
    run = FusionRun(FusionArgs())
    run.error = error
    setattr(p, RUN_ATTRIBUTE, run)
    _wrap_sample(p, run)


def native_window() -> int:
    """The active model's training size in latent pixels: 128 for SDXL, 64 for SD1/SD2."""
    return 128 if getattr(shared.sd_model, "is_sdxl", False) else 64


def _region_images(p: Any, args: FusionArgs) -> list[torch.Tensor | None]:
    """Each mask decoded, once per generation (None for boxes). Every header is checked first:
    the image's size, and all the masks' pixels together within the bound."""
    window = args.window or native_window()
    if args.stride > window:
        raise FusionArgumentError(f"{TITLE}: stride {args.stride} is larger than the window ({window} latent pixels); lower the stride")
    try:  # the first pass's canvas here; a hires pass's is checked when it is laid out
        md.check_view_count(p.height // 8, p.width // 8, window, args.stride, args.circular)
    except ValueError as error:
        raise FusionArgumentError(f"{TITLE}: {error}") from None
    with_masks = [(index, region.mask) for index, region in enumerate(args.regions) if region.mask is not None]
    for index, mask in with_masks:
        width, height = masks.size(mask)
        if (width, height) != (p.width, p.height):
            raise FusionArgumentError(
                f"{TITLE}: regions[{index}].mask is {width}x{height} but the image is {p.width}x{p.height}; give a mask of the image's size"
            )
    if len(with_masks) * p.width * p.height > masks.MAX_DECODED_PIXELS:
        raise FusionArgumentError(
            f"{TITLE}: {len(with_masks)} masks of {p.width}x{p.height} are more than {masks.MAX_DECODED_PIXELS:,} mask pixels "
            "in all; use boxes for some regions or a smaller image"
        )
    images: list[torch.Tensor | None] = [None] * len(args.regions)
    for index, mask in with_masks:
        try:
            images[index] = masks.decode_mask(mask, (p.width, p.height))
        except masks.MaskError as error:
            raise FusionArgumentError(f"{TITLE}: invalid argument: regions[{index}].mask: {error}") from None
        if not bool(images[index].any()):
            raise FusionArgumentError(f"{TITLE}: invalid argument: regions[{index}].mask: {masks.EMPTY}")
    return images


def _with_canonical_masks(args: FusionArgs, images: list[torch.Tensor | None]) -> FusionArgs:
    """The arguments with each mask as the 1-bit PNG it was read as (short infotext)."""
    regions = [
        region if image is None else region.copy(update={"mask": masks.encode_mask(image)}) for region, image in zip(args.regions, images)
    ]
    return args.copy(update={"regions": regions})


def _check_host(p: Any, args: FusionArgs) -> None:
    if getattr(shared.sd_model, "cond_stage_key", None) == "edit":
        raise FusionArgumentError(f"{TITLE}: InstructPix2Pix (edit) checkpoints cannot be fused; load a text-to-image checkpoint")
    if getattr(p, "refiner_checkpoint", None) not in (None, "", "None", "none"):
        raise FusionArgumentError(f"{TITLE}: the refiner switches checkpoints mid-sampling; turn the refiner off to fuse")
    for name in ("width", "height"):
        value = getattr(p, name)
        if value % 8:
            low, high = value - value % 8, value - value % 8 + 8
            raise FusionArgumentError(
                f"{TITLE}: {name} {value} is not a multiple of 8 (one latent pixel is 8 image pixels); use {low or high} or {high}"
            )
    if _needs_fusion_text_encoder(args) and getattr(shared.sd_model, "is_sdxl", False):
        what = "text_encoder='own'" if args.text_encoder == "own" else "solo='fusion' (model A encodes both prompts)"
        raise FusionArgumentError(
            f"{TITLE}: {what} needs the fusion checkpoint's text encoder, which is supported for SD1 checkpoints only; "
            "with SDXL use text_encoder='solo' and solo='active'"
        )


def _check_not_a_copy_of_the_active(p: Any, args: FusionArgs, info: Any) -> None:
    """A two-model method run on the active checkpoint with itself and the same prompts gives
    the plain image: refuse it rather than label an unfused image as fused. With a prompt of
    its own it is prompt fusion (SNB), guidance away from that prompt, or another negative."""
    if args.method not in TWO_MODEL_METHODS or not is_active_checkpoint(info):
        return
    prompts, negatives = (
        list(getattr(p, "all_prompts", None) or [p.prompt]),
        list(getattr(p, "all_negative_prompts", None) or [p.negative_prompt]),
    )
    same_prompts = "prompt" not in USED_BY[args.method] or all((args.prompt or prompt) == prompt for prompt in prompts)
    same_negatives = "negative_prompt" not in USED_BY[args.method] or all(
        (args.negative_prompt or negative) == negative for negative in negatives
    )
    if same_prompts and same_negatives:
        raise FusionArgumentError(
            f"{TITLE}: the fusion checkpoint {info.title!r} is the active checkpoint and no fusion prompt differs from the "
            "main one, so the image would be the active model alone; choose another checkpoint, or give a fusion prompt "
            "of its own to fuse two prompts"
        )


KEEP_LOADED = "model_fusion_keep_loaded"
PREVIEW_STEPS = "model_fusion_preview_steps"
DEFAULT_MODEL = "model_fusion_default_model"
DEFAULT_SELECTION = "model_fusion_default_selection"
DEFAULT_MODE = "model_fusion_default_mode"
SECTION = ("model_fusion", TITLE)


def add_settings() -> None:
    """``on_ui_settings``: the extension's section in Settings (the WebUI picks each
    control from the default's type: checkbox, number, text)."""

    def option(key: str, default: Any, label: str, **component_args: Any) -> None:
        shared.opts.add_option(key, shared.OptionInfo(default, label, component_args=component_args or None, section=SECTION))

    option(KEEP_LOADED, True, "Keep the fusion checkpoint loaded between generations (off: free its memory after each one)")
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


def preview_steps() -> int:
    """How many fused steps a preview shows (Settings), within 1 to 10."""
    try:
        return max(1, min(10, int(setting(PREVIEW_STEPS, 3))))
    except (TypeError, ValueError):
        return 3


def _release(run: FusionRun) -> None:
    """The run lets go of its models; the cache too unless the settings keep it loaded."""
    run.release()
    if not setting(KEEP_LOADED, True):
        unload()


def keep_result(p: Any, image: Any) -> None:
    """``postprocess_image_after_composite``: the finished fused image, for the comparison
    grid and the previews to show."""
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is not None and run.error is None and (run.args.compare or run.args.preview):
        run.results[_image_index(p, int(getattr(p, "batch_index", 0)))] = image


def _image_index(p: Any, position: int) -> int:
    """Index over the whole generation of the image at ``position`` in the current batch."""
    return int(getattr(p, "iteration", 0)) * p.batch_size + position


def finish(p: Any, processed: Any = None) -> None:
    """``Script.postprocess``: add the comparison and previews, then drop the wrapper and the
    run's model references (its stats stay on ``p``)."""
    _unwrap_sample(p)
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is None:
        return
    try:
        if processed is not None and run.error is None:
            _add_outputs(p, processed, run)
    finally:
        _release(run)


def _add_outputs(p: Any, processed: Any, run: FusionRun) -> None:
    """The comparison and previews after the WebUI's own images, each with the generation's
    infotext and a ``Fusion output`` label; saved where the WebUI saves its own."""
    from modules import images, infotext_utils, processing

    active = getattr(getattr(shared.sd_model, "sd_checkpoint_info", None), "title", "active checkpoint")
    titles = outputs.Titles(active, run.model_info.title if run.model_info is not None else active)
    extra: list[outputs.Output] = []
    if run.args.compare:
        extra += outputs.comparison(run, titles, p.all_seeds, _font)
    if run.args.preview and run.args.method == "regions":
        extra += outputs.region_previews(run, titles, _font)
    elif run.args.preview:
        previews = outputs.snb_previews(run, titles, p.batch_size, preview_steps(), _font)
        if run.results and not previews:
            why = (
                "base_uncond makes no per-pixel choice to show" if run.args.method == "base_uncond" else "the schedule ran one model alone"
            )
            processed.comments = f"{processed.comments or ''}\n{TITLE}: no fused step to preview ({why})".strip()
        extra += previews
    for output in extra:
        index = 0 if output.index is None else output.index
        text = processing.create_infotext(
            p,
            p.all_prompts,
            p.all_seeds,
            p.all_subseeds,
            index=index,
            use_main_prompt=output.index is None,
            all_negative_prompts=p.all_negative_prompts,
        )
        text = f"{text}, Fusion output: {infotext_utils.quote(output.label)}"
        if shared.opts.enable_pnginfo:
            output.image.info["parameters"] = text
        processed.images.append(output.image)
        processed.infotexts.append(text)
        if output.index is None and shared.opts.grid_save and not p.do_not_save_grid:
            images.save_image(
                output.image,
                p.outpath_grids,
                "grid",
                p.all_seeds[0],
                p.all_prompts[0],
                shared.opts.grid_format,
                info=text,
                short_filename=not shared.opts.grid_extended_filename,
                p=p,
                grid=True,
                suffix=output.suffix,
            )
        elif output.index is not None and p.save_samples():
            images.save_image(
                output.image,
                p.outpath_samples,
                "",
                p.all_seeds[index],
                p.all_prompts[index],
                shared.opts.samples_format,
                info=text,
                p=p,
                suffix=output.suffix,
            )


def _font(size: int) -> Any:
    """The WebUI's grid font (Settings > Saving images: font), else PIL's."""
    from modules import images

    try:
        return images.get_font(size)
    except Exception:
        return pictures.default_font(size)


def _wrap_sample(p: Any, run: FusionRun) -> None:
    original = p.sample

    @functools.wraps(original)
    def sample(*args: Any, **kwargs: Any) -> Any:
        try:
            return _sample(run, p, original, *args, **kwargs)
        except BaseException:
            # The generation ends here and postprocess will not run: let go of p and the models now.
            _unwrap_sample(p)
            _release(run)
            raise

    setattr(sample, _WRAPPED_MARK, original)
    run.callback = functools.partial(_on_cfg_denoiser, run)
    p.sample = sample


def _sample(run: FusionRun, p: Any, original: Callable, *args: Any, **kwargs: Any) -> Any:
    """One ``p.sample`` call (a batch) with the fusion hooks in place, and only then; with
    the comparison, the same batch again with each model alone."""
    if run.error is not None:
        raise run.error
    if run.model_info is not None:
        run.fusion_model = load_fusion_model(run.model_info, _needs_fusion_text_encoder(run.args))
    patched: list[Any] = []
    run.patched = patched
    run.batch = int(getattr(p, "iteration", 0))
    same_noise = _noise_replay(p)
    script_callbacks.on_cfg_denoiser(run.callback, name="model_fusion")
    try:
        with _sampling_residency(run.fusion_model):
            result = original(*args, **kwargs)
            _check_every_pass_fused(run)
            _sample_alone(run, p, same_noise, functools.partial(original, *args, **kwargs))
    except torch.cuda.OutOfMemoryError as error:  # torch.OutOfMemoryError from torch 2.5 on; the WebUI pins 2.1
        raise _out_of_memory(error) from error
    finally:
        run.variant = FUSED
        script_callbacks.remove_callbacks_for_function(run.callback)
        for inner in patched:
            inner.__dict__.pop("forward", None)
        patched.clear()
    if run.error is not None:
        raise run.error
    return result


def _noise_replay(p: Any) -> Callable[[], Any]:
    """A fresh copy of the batch's ``p.rng`` as the WebUI made it (the sampling consumes it,
    and hires fix replaces it), so a comparison starts from the very same noise."""
    rng = p.rng
    return lambda: type(rng)(
        rng.shape,
        rng.seeds,
        subseeds=rng.subseeds,
        subseed_strength=rng.subseed_strength,
        seed_resize_from_h=rng.seed_resize_from_h,
        seed_resize_from_w=rng.seed_resize_from_w,
    )


def _sample_alone(run: FusionRun, p: Any, same_noise: Callable[[], Any], sample: Callable[[], Any]) -> None:
    """Comparison: each model alone from the batch's own noise; finished like the WebUI
    finishes its images and kept per image index for ``postprocess``."""
    if not run.variants:
        return
    if shared.state.job_count > 0:  # keep the progress bar moving forward: one job per pass
        shared.state.job_count += len(run.variants) * (2 if getattr(p, "enable_hr", False) else 1)
    for variant in run.variants:
        if shared.state.interrupted or shared.state.skipped:
            return
        run.variant = variant
        p.rng = same_noise()
        shared.state.nextjob()
        samples = sample()
        _check_every_pass_fused(run)
        if shared.state.interrupted or shared.state.skipped:
            return  # a part-sampled image is no comparison
        for index, image in enumerate(_finished_images(p, samples)):
            run.alone[variant][_image_index(p, index)] = image


def _finished_images(p: Any, samples: Any) -> list[Any]:
    """Latents to images as ``process_images_inner`` finishes them: decode, clamp, colour
    correction and the inpainting overlay (the other scripts' image hooks are theirs)."""
    import numpy as np
    from modules import processing
    from PIL import Image

    if getattr(samples, "already_decoded", False):
        decoded = samples
    else:
        decoded = processing.decode_latent_batch(p.sd_model, samples, target_device=devices.cpu, check_for_nans=True)
    pixels = torch.clamp((torch.stack(list(decoded)).float() + 1.0) / 2.0, min=0.0, max=1.0)
    corrections = getattr(p, "color_corrections", None) or []
    overlays = (getattr(p, "overlay_images", None) or []) if getattr(shared.opts, "overlay_inpaint", True) else []
    images = []
    for index, sample in enumerate(pixels):
        image = Image.fromarray((255.0 * np.moveaxis(sample.cpu().numpy(), 0, 2)).astype(np.uint8))
        if index < len(corrections):
            image = processing.apply_color_correction(corrections[index], image)
        if index < len(overlays):
            image, _ = processing.apply_overlay(image, p.paste_to, overlays[index])
        images.append(image)
    return images


def _out_of_memory(error: torch.cuda.OutOfMemoryError) -> torch.cuda.OutOfMemoryError:
    """Free the fusion model so the next generation has the memory back, and say what helps."""
    unload()
    return torch.cuda.OutOfMemoryError(
        f"{TITLE}: out of memory while fusing ({error}). The fusion checkpoint was unloaded. Two UNets share the "
        "device during fusion: lower the image size, the batch size or (Regions) the view batch size, or start the "
        "WebUI with --medvram"
    )


def _unwrap_sample(p: Any) -> None:
    original = getattr(p.__dict__.get("sample"), _WRAPPED_MARK, None)
    if original is not None:
        # A copy of p (X/Y/Z plot cells) carries the wrapper of its source: rebind to the class method.
        if getattr(original, "__func__", None) is getattr(type(p), "sample", None):
            del p.sample
        else:
            p.sample = original


def _check_every_pass_fused(run: FusionRun) -> None:
    """Never silent: a pass whose denoiser ran but never reached our model hook (another
    extension swapped the sampler's inner model) produced an unfused image. A pass with no
    denoiser call at all (DDIM with one step makes none) has nothing to fuse."""
    if shared.state.interrupted or shared.state.skipped:
        return
    for sampling_pass in run.passes:
        if sampling_pass.steps_seen and sampling_pass.calls == 0:
            raise RuntimeError(
                f"{TITLE}: the sampler never called the fusion hook (another extension may replace the "
                "sampler's denoiser); the image would not be fused, so it was not kept"
            )


def _needs_fusion_text_encoder(args: FusionArgs) -> bool:
    if args.method == "regions":
        return args.text_encoder == "own"
    return args.text_encoder == "own" or args.solo == "fusion"


def begin_pass(p: Any) -> None:
    """``process_before_every_sampling``: hook the sampler of this pass. Errors go to the run."""
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is None or run.error is not None or run.patched is None:
        return
    try:
        denoiser = p.sampler.model_wrap_cfg
        inner = denoiser.inner_model
        original = inner.forward
        run.begin_pass(_sampling_pass(p, run, denoiser, inner, original))
        inner.forward = functools.partial(run.forward, original)
        run.patched.append(inner)
    except Exception as error:
        run.error = error


def _on_cfg_denoiser(run: FusionRun, params: Any) -> None:
    try:
        denoiser = params.denoiser
        extra = denoiser.sampler.sampler_extra_args
        conds_list, _ = prompt_parser.reconstruct_multicond_batch(extra["cond"], denoiser.step)
        run.begin_step(
            HostStep(
                x_in=params.x,
                sigma_in=params.sigma,
                image_cond_in=params.image_cond,
                text_cond=params.text_cond,
                text_uncond=params.text_uncond,
                conds_list=conds_list,
                index=denoiser.step,
                cfg_scale=float(extra["cond_scale"]) * float(getattr(denoiser, "cond_scale_miltiplier", 1.0)),
                total_steps=getattr(denoiser, "total_steps", None),
            )
        )
    except Exception as error:  # the host would only log it; the next model call raises it
        run.error = error


def _sampling_pass(p: Any, run: FusionRun, denoiser: Any, inner: Any, original: Callable) -> SamplingPass:
    args = run.args
    fusion = run.fusion_model or FusionModel("", None)  # None: no region uses the fusion checkpoint
    is_kdiffusion = hasattr(inner, "sigma_to_t")
    make_cond = _condition_dict_maker(denoiser)

    def call(model_forward: Callable) -> Callable:
        def fn(x: torch.Tensor, sigma: torch.Tensor, cond: Cond, image_cond: torch.Tensor) -> torch.Tensor:
            return model_forward(x, sigma, cond=make_cond(cond, image_cond))

        return fn

    fusion_forward = original if fusion.unet is None else _same_wrapper(inner, _UNetModel(fusion.unet))

    hires = bool(getattr(p, "is_hr_pass", False))
    main_prompts = list(p.hr_prompts if hires else p.prompts)
    main_negatives = list(p.hr_negative_prompts if hires else p.negative_prompts)
    active_encoder = shared.sd_model
    fusion_encoder = _EncoderModel(fusion.text_encoder) if fusion.text_encoder is not None else shared.sd_model
    solo_active = args.solo == "active" or args.method == "regions"  # Regions: the background is the active model
    own = args.text_encoder == "own"
    encoder_of_active = active_encoder if (own or solo_active) else fusion_encoder
    encoder_of_fusion = fusion_encoder if (own or not solo_active) else active_encoder
    two_models = args.method in TWO_MODEL_METHODS  # Regions: the fusion checkpoint's main conditioning is the main prompt's
    fusion_prompts = [_strip_networks(args.prompt)] * len(main_prompts) if two_models and args.prompt else main_prompts
    fusion_negatives = (
        [_strip_networks(args.negative_prompt)] * len(main_negatives) if two_models and args.negative_prompt else main_negatives
    )
    steps = _schedule_steps(p, hires)

    def host_conditioning(step: HostStep) -> Conditioning:
        return Conditioning(step.conds_list, step.text_cond, step.text_uncond)

    def encoded(encoder: Any, prompts: list[str], negatives: list[str]) -> Callable[[HostStep], Conditioning]:
        if encoder is active_encoder and prompts == main_prompts and negatives == main_negatives:
            return host_conditioning
        cache: dict[str, Any] = {}

        def conditioning(step: HostStep) -> Conditioning:
            if not cache:  # once per pass, at the first step that needs it
                cache.update(_encode(p, encoder, prompts, negatives, steps))
            conds_list, cond = prompt_parser.reconstruct_multicond_batch(cache["c"], step.index)
            uncond = prompt_parser.reconstruct_cond_batch(cache["uc"], step.index)
            return Conditioning(conds_list, cond, uncond)

        return conditioning

    active_conditioning = encoded(encoder_of_active, main_prompts, main_negatives)
    regions = None
    if args.method == "regions":
        conditionings = []
        for region in args.regions:
            prompts = [_strip_networks(region.prompt)] * len(main_prompts) if region.prompt else main_prompts
            negatives = [_strip_networks(region.negative_prompt)] * len(main_negatives) if region.negative_prompt else main_negatives
            conditionings.append(
                {ACTIVE: encoded(encoder_of_active, prompts, negatives), FUSION: encoded(encoder_of_fusion, prompts, negatives)}
            )
        regions = RegionSource(
            conditionings=conditionings,
            native_window=native_window(),
            noise_to=_noise_to(inner, is_kdiffusion),
            colours=_bootstrap_colours,
            seeds=list(p.seeds),
        )
    return SamplingPass(
        active_fn=call(original),
        fusion_fn=call(fusion_forward),
        active_conditioning=active_conditioning,
        fusion_conditioning=encoded(encoder_of_fusion, fusion_prompts, fusion_negatives),
        active_uses_host_conds=active_conditioning is host_conditioning,
        sigma_to_t=(lambda s: float(inner.sigma_to_t(s)[0])) if is_kdiffusion else (lambda s: float(s[0])),
        units="x0" if is_kdiffusion else "eps",
        max_rows=None if shared.opts.batch_cond_uncond else len(main_prompts),
        regions=regions,
        progress=_show_progress,
        hires=hires,
    )


def _show_progress(text: str) -> None:
    """The WebUI shows ``state.textinfo`` under the progress bar (and in /sdapi/v1/progress)."""
    shared.state.textinfo = f"{TITLE}: {text}"


def _same_wrapper(inner: Any, model: _UNetModel) -> Any:
    """The sampler's own denoiser class (CompVis, V, LCM, timesteps …) around the fusion UNet,
    so both models see the same scalings; only some constructors take ``quantize``."""
    cls = type(inner)
    if "quantize" in inspect.signature(cls.__init__).parameters:
        return cls(model, quantize=getattr(inner, "quantize", False))
    return cls(model)


BOOTSTRAP_COLOURS = 20
"""Constant-colour backgrounds to draw from (the official default count)."""


def _bootstrap_colours() -> torch.Tensor:
    """(K, C) latents of random constant-colour images through the active VAE (official
    ``region_based.py``). A 64-pixel square per colour is enough for a constant latent."""
    from modules import sd_samplers_common

    rgb = torch.rand(BOOTSTRAP_COLOURS, 3, generator=torch.Generator().manual_seed(0))
    images = rgb[:, :, None, None].expand(-1, -1, 64, 64).contiguous()
    with torch.no_grad(), devices.without_autocast():  # the VAE in its own dtype (--no-half-vae), as the WebUI encodes
        latents = sd_samplers_common.images_tensor_to_samples(images, model=shared.sd_model)
    return latents.float().mean(dim=(2, 3))


def _noise_to(inner: Any, is_kdiffusion: bool) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Noise a clean latent to the sampler's current level: ``x0 + sigma n`` for k-diffusion,
    ``sqrt(a_t) x0 + sqrt(1 - a_t) n`` for the timestep samplers (DDIM, PLMS, UniPC)."""

    def k_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x0 + noise * sigma.to(x0).view(-1, 1, 1, 1)

    def t_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alphas = shared.sd_model.alphas_cumprod.to(x0.device)[t.long()].to(x0).view(-1, 1, 1, 1)
        return alphas.sqrt() * x0 + (1 - alphas).sqrt() * noise

    return k_noise if is_kdiffusion else t_noise


def _condition_dict_maker(denoiser: Any) -> Callable[[Cond, torch.Tensor], dict]:
    """The host's ``make_condition_dict`` (CFGDenoiser.forward) for this model."""
    if shared.sd_model.model.conditioning_key == "crossattn-adm":
        return lambda c, image_cond: {"c_crossattn": [c], "c_adm": image_cond}
    return lambda c, image_cond: {**c, "c_concat": [image_cond]} if isinstance(c, dict) else {"c_crossattn": [c], "c_concat": [image_cond]}


def _strip_networks(prompt: str) -> str:
    """Extra-network tags (``<lora:...>``) act on the active model only; drop them from the fusion prompt."""
    prompts, _ = extra_networks.parse_prompts([prompt])
    return prompts[0]


def _schedule_steps(p: Any, hires: bool) -> tuple[int, int | None]:
    """Steps for prompt-editing schedules, as the host computes them for this pass."""
    multiplier = getattr(p, "step_multiplier", 1) or 1
    first = getattr(p, "firstpass_steps", None) or p.steps * multiplier
    if not hires:
        return first, None
    return first, (getattr(p, "hr_second_pass_steps", 0) or p.steps) * multiplier


def _encode(p: Any, encoder: Any, prompts: list[str], negatives: list[str], steps: tuple[int, int | None]) -> dict:
    first, hires_steps = steps
    old = bool(getattr(shared.opts, "use_old_scheduling", False))
    positive = prompt_parser.SdConditioning(prompts, width=p.width, height=p.height)
    negative = prompt_parser.SdConditioning(negatives, width=p.width, height=p.height, is_negative_prompt=True)
    with devices.autocast(), torch.no_grad():
        return {
            "c": prompt_parser.get_multicond_learned_conditioning(encoder, positive, first, hires_steps, old),
            "uc": prompt_parser.get_learned_conditioning(encoder, negative, first, hires_steps, old),
        }


def unload() -> bool:
    """Free the cached fusion model (UI button, API route)."""
    freed = CACHE.unload()
    devices.torch_gc()
    return freed
