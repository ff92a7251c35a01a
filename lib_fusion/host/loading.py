"""The fusion checkpoint in memory: built beside ``shared.sd_model`` (never touching it),
cached, placed by the WebUI's memory policy (``--medvram``/``--lowvram``), and the thin
wrappers that let the WebUI's denoisers and prompt parser drive its UNet and text encoder."""

from __future__ import annotations

import contextlib
import ctypes
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
from modules import shared

from lib_fusion.arguments.args import TITLE
from lib_fusion.arguments.messages import shown
from lib_fusion.engine.checkpoint_cache import CACHE, CacheKey, FusionModelError
from lib_fusion.engine.run import FusionRun
from lib_fusion.host.checkpoints import (
    SDXL_TEXT_ENCODER_PREFIX,
    TEXT_ENCODER_PREFIX,
    UNET_PREFIX,
    active_config,
    active_unet,
    check_family,
    is_active_checkpoint,
    with_prefix,
    without_path,
)
from lib_fusion.host.prediction import PredictionType, checkpoint_prediction
from lib_fusion.host.probe import host_module

A1111_BUILD = "to build a checkpoint the way AUTOMATIC1111 builds its own"
"""What the modules only AUTOMATIC1111 has are needed for (Forge-family hosts load through ``forge_loader``)."""


@dataclass
class FusionModel:
    """The secondary checkpoint's parts: a UNet, and a text encoder when one is needed."""

    title: str
    unet: Any
    """None: the fusion checkpoint is the active one, whose UNet is reused. A module on
    AUTOMATIC1111, Forge's UNet patcher on Forge."""
    text_encoder: Any = None
    """What encodes its prompts (``get_learned_conditioning``): the wrapped encoder on
    AUTOMATIC1111 when one is needed, the whole engine on Forge."""
    free: Callable[[], None] | None = None
    """Called when the cache drops the model (Forge: tell its memory manager)."""
    prediction: PredictionType | None = None
    """What the UNet predicts, on AUTOMATIC1111 (:mod:`.prediction`); None where the host's
    model converts it (Forge's predictor) or the active UNet is reused."""


@dataclass
class Held:
    """What the host holds for one generation beside the engine's run: the checkpoints loaded
    for it and the hooks it installed. Kept on ``p`` (:data:`HELD_ATTRIBUTE`), let go at the
    generation's end (:meth:`release`)."""

    fusion: FusionModel | None = None
    more: list[FusionModel] = field(default_factory=list)
    """SNB's further fusion checkpoints, in the order of ``args.models``."""
    regions: dict[str, FusionModel] = field(default_factory=dict)
    """The checkpoints regions name besides the active and the fusion one, by title."""
    patched: list[Any] | None = None
    """What the sampling hooks changed this batch (None outside ``p.sample``: no hook is due)."""
    callback: Callable[[Any], None] | None = None
    """The ``on_cfg_denoiser`` callback of this generation."""

    def release(self) -> None:
        self.fusion, self.more, self.regions = None, [], {}


HELD_ATTRIBUTE = "model_fusion_held"


class Family(Protocol):
    """What the ``p.sample`` wrapper needs of a host family's module."""

    PER_IMAGE_STEPS: bool
    """``on_cfg_denoiser`` shows one row per image (Forge), not the full row layout (A1111)."""

    def load_checkpoint(self, info: Any, run: FusionRun, capacity: int) -> FusionModel: ...

    def sampling_residency(self, model: FusionModel | None) -> contextlib.AbstractContextManager[None]: ...

    def end_sampling(self, held: Held) -> None: ...


def load_generation_models(run: FusionRun, held: Held, family: Family, capacity: int) -> None:
    """The plan's checkpoints, from the cache or loaded, into ``held``: the fusion checkpoint
    last, so that it is the most recently used (the status line shows it). ``capacity``: the
    Settings' budget."""
    plan = run.plan
    region_infos = sorted(plan.regions.items(), key=lambda item: not CACHE.holds(item[1].filename))
    more_infos = sorted(enumerate(plan.more), key=lambda item: not CACHE.holds(item[1].filename))
    if plan.fusion is not None and CACHE.holds(plan.fusion.filename):
        family.load_checkpoint(plan.fusion, run, capacity)  # held: made recent first, so no load evicts it
    # Those held come first (each made the most recent), then the missing ones: a load evicts
    # only what this generation does not need (the budget was checked for all of them).
    for title, info in region_infos:
        places = [f"regions[{index}].model" for index, region in enumerate(plan.args.regions) if region.model == title]
        try:
            held.regions[title] = family.load_checkpoint(info, run, capacity)
        except FusionModelError as error:
            raise error.at(", ".join(places + (["background"] if plan.args.background == title else []))) from None
    more: dict[int, FusionModel] = {}
    for index, info in more_infos:
        try:
            more[index] = family.load_checkpoint(info, run, capacity)
        except FusionModelError as error:
            raise error.at(f"{plan.args.fusion_checkpoint_place(index)}.model") from None
    held.more = [more[index] for index in range(len(plan.more))]
    if plan.fusion is not None:
        held.fusion = family.load_checkpoint(plan.fusion, run, capacity)


def load_fusion_model(info: Any, need_text_encoder: bool, capacity: int = 1) -> FusionModel:
    """Cached secondary model; built without touching ``shared.sd_model``. ``capacity``: how
    many the cache may hold (the Settings' budget)."""
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
    return CACHE.get(key, lambda: _build(info, need_text_encoder), capacity)


def loaded_report() -> dict[str, Any] | None:
    """The most recently used fusion checkpoint (title, parts, seconds its load took, bytes),
    and under ``held`` every cached one, least recently used first; None when none is."""
    held = [_report(model, seconds) for _, model, seconds in CACHE.held()]
    if not held:
        return None
    return {**held[-1], "held": held}


def _report(model: FusionModel, seconds: float) -> dict[str, Any]:
    parts = ["unet"] + (["text_encoder"] if model.text_encoder is not None else [])
    modules = [_module_of(part) for part in (model.unet, model.text_encoder) if part is not None]
    size = sum(tensor.numel() * tensor.element_size() for module in modules for tensor in (*module.parameters(), *module.buffers()))
    return {"title": model.title, "parts": parts, "load_seconds": round(seconds or 0.0, 3), "bytes": size}


def _module_of(part: Any) -> torch.nn.Module:
    """The weights behind a part: the module itself, or (Forge) a patcher's model or an
    engine's text encoder."""
    if isinstance(part, torch.nn.Module):
        return part
    objects = getattr(part, "forge_objects", None)
    if objects is not None:
        return objects.clip.cond_stage_model
    return part.model


def _build(info: Any, need_text_encoder: bool) -> FusionModel:
    try:
        state_dict = _read_weights(info.filename, need_text_encoder)
    except Exception as error:  # safetensors/unpickler errors name neither the file nor a fix
        raise FusionModelError(f"{TITLE}: cannot read fusion checkpoint {info.title!r}: {without_path(str(error), info)}") from error
    config = active_config()
    unet_weights = with_prefix(state_dict, UNET_PREFIX)
    check_family(info, unet_weights, active_unet().state_dict())
    _check_floating(info, unet_weights)
    unet_config = config.model.params.get("unet_config") or config.model.params.get("network_config")
    unet = _instantiate_with(unet_config, unet_weights)
    devices = host_module("modules.devices")
    unet = _owning(unet.to(_home(), dtype=devices.dtype_unet).eval().requires_grad_(False), state_dict)
    text_encoder = _build_text_encoder(info, config, state_dict) if need_text_encoder else None
    return FusionModel(info.title, unet, text_encoder, prediction=checkpoint_prediction(info, config, unet))


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
        return host_module("modules.sd_models", A1111_BUILD).read_state_dict(filename, map_location="cpu")
    from safetensors import safe_open

    with safe_open(filename, framework="pt", device="cpu") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(UNET_PREFIX)}


def _instantiate_with(config: Any, weights: dict) -> torch.nn.Module:
    """The UNet built on the meta device and given the loaded tensors themselves (as the
    WebUI builds its own model): no memory allocated, zeroed and overwritten."""
    sd_models = host_module("modules.sd_models", A1111_BUILD)
    sd_disable_initialization = host_module("modules.sd_disable_initialization", A1111_BUILD)
    with sd_disable_initialization.DisableInitialization(disable_clip=False), torch.device("meta"):
        module = sd_models.instantiate_from_config(config)
    module.load_state_dict(weights, strict=True, assign=True)
    left = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if left:  # a buffer the checkpoint does not hold: build it the plain way
        with sd_disable_initialization.DisableInitialization(disable_clip=False):
            module = sd_models.instantiate_from_config(config)
        module.load_state_dict(weights, strict=True)
    return module


def _offload() -> str:
    """The WebUI's memory policy, applied to the fusion model: "none" (stays on the device),
    "idle" (``--medvram``/``--medvram-sdxl``: on the device while sampling, on the CPU
    between generations) or "call" (``--lowvram``: on the device only during each call)."""
    lowvram = host_module("modules.lowvram", "to follow --medvram and --lowvram")
    if not lowvram.is_needed(shared.sd_model):
        return "none"
    return "call" if shared.cmd_opts.lowvram else "idle"


def _home() -> torch.device:
    """Where the fusion model waits between uses."""
    devices = host_module("modules.devices")
    return devices.device if _offload() == "none" else devices.cpu


def _resident(module: torch.nn.Module | None) -> contextlib.AbstractContextManager[None]:
    """``--lowvram``: ``module`` on the device for one call only."""
    return _on_device_under("call", module)


def sampling_residency(model: FusionModel | None) -> contextlib.AbstractContextManager[None]:
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
    devices = host_module("modules.devices")
    for part in parts:
        part.to(devices.device)
    try:
        yield
    finally:
        for part in parts:
            part.to(devices.cpu)


def _build_text_encoder(info: Any, config: Any, state_dict: dict) -> Any:
    """A second text encoder, wrapped like the host wraps its own (emphasis, BREAK, embeddings)."""
    params = config.model.params
    if "conditioner_config" in params:
        return _build_sdxl_conditioner(info, params.conditioner_config, state_dict)
    sd_hijack, sd_hijack_clip, sd_models, devices = _text_encoder_modules()
    sd_disable_initialization = host_module("modules.sd_disable_initialization", A1111_BUILD)
    with sd_disable_initialization.DisableInitialization(disable_clip=True):
        encoder = sd_models.instantiate_from_config(params.cond_stage_config)
    if type(encoder).__name__ != "FrozenCLIPEmbedder":
        raise FusionModelError(
            f"{TITLE}: text_encoder='own' supports SD1 (CLIP ViT-L) and SDXL checkpoints; "
            f"{info.title!r} uses {type(encoder).__name__}. Use text_encoder='solo'."
        )
    encoder.load_state_dict(with_prefix(state_dict, TEXT_ENCODER_PREFIX), strict=False)
    encoder = _owning(encoder.to(_home(), dtype=devices.dtype).eval().requires_grad_(False), state_dict)
    embeddings = encoder.transformer.text_model.embeddings
    embeddings.token_embedding = sd_hijack.EmbeddingsWithFixes(embeddings.token_embedding, sd_hijack.model_hijack)
    return sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(encoder, sd_hijack.model_hijack)


def _build_sdxl_conditioner(info: Any, config: Any, state_dict: dict) -> torch.nn.Module:
    """SDXL's conditioner (CLIP ViT-L and OpenCLIP bigG) of the fusion checkpoint, each text
    embedder wrapped as ``sd_hijack.hijack`` wraps the active model's (that function itself
    would also rebind the WebUI's global hijack state to this model)."""
    sd_hijack, sd_hijack_clip, sd_models, devices = _text_encoder_modules()
    sd_disable_initialization = host_module("modules.sd_disable_initialization", A1111_BUILD)
    with sd_disable_initialization.DisableInitialization(disable_clip=True):
        conditioner = sd_models.instantiate_from_config(config)
    conditioner.load_state_dict(with_prefix(state_dict, SDXL_TEXT_ENCODER_PREFIX), strict=False)
    conditioner = _owning(conditioner.to(_home(), dtype=devices.dtype).eval().requires_grad_(False), state_dict)
    hijack = sd_hijack.model_hijack
    for index, embedder in enumerate(conditioner.embedders):
        kind = type(embedder).__name__
        if kind == "FrozenCLIPEmbedder":
            embeddings = embedder.transformer.text_model.embeddings
            embeddings.token_embedding = sd_hijack.EmbeddingsWithFixes(embeddings.token_embedding, hijack)
            conditioner.embedders[index] = sd_hijack_clip.FrozenCLIPEmbedderForSDXLWithCustomWords(embedder, hijack)
        elif kind == "FrozenOpenCLIPEmbedder2":
            sd_hijack_open_clip = host_module("modules.sd_hijack_open_clip", A1111_BUILD)
            token_embedding = embedder.model.token_embedding
            embedder.model.token_embedding = sd_hijack.EmbeddingsWithFixes(token_embedding, hijack, textual_inversion_key="clip_g")
            conditioner.embedders[index] = sd_hijack_open_clip.FrozenOpenCLIPEmbedder2WithCustomWords(embedder, hijack)
    return SdxlTextEncoder(conditioner)


def _text_encoder_modules() -> tuple[Any, Any, Any, Any]:
    """What wraps a text encoder as the WebUI wraps its own (emphasis, BREAK, embeddings)."""
    return (
        host_module("modules.sd_hijack", A1111_BUILD),
        host_module("modules.sd_hijack_clip", A1111_BUILD),
        host_module("modules.sd_models", A1111_BUILD),
        host_module("modules.devices"),
    )


class SdxlTextEncoder(torch.nn.Module):
    """The fusion checkpoint's SDXL conditioner as an encoder of prompts: the WebUI's own
    ``sd_models_xl.get_learned_conditioning`` (size and aesthetic conditioning, zeroed
    empty negatives), which reads nothing of a model but its ``conditioner``."""

    def __init__(self, conditioner: torch.nn.Module) -> None:
        super().__init__()
        self.conditioner = conditioner

    def forward(self, texts: Any) -> dict:
        return host_module("modules.sd_models_xl", A1111_BUILD).get_learned_conditioning(self, texts)


class EncoderModel:
    """What ``prompt_parser`` needs of a model: ``get_learned_conditioning(texts)``."""

    def __init__(self, text_encoder: Any) -> None:
        self.text_encoder = text_encoder

    def get_learned_conditioning(self, texts: Any) -> Any:
        with _resident(self.text_encoder):
            return self.text_encoder(texts)


class UNetModel:
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


def unload() -> bool:
    """Free the cached fusion model (UI button, API route)."""
    freed = CACHE.unload()
    give_back_memory()
    return freed


def give_back_memory() -> None:
    """After checkpoints were freed: the device's cache emptied (the WebUI's ``torch_gc``) and
    the C heap trimmed. glibc keeps large freed blocks in its arenas (its mmap threshold rises
    after big frees), so without a trim the process's RSS stayed up to one fp32 UNet above its
    level on a real AUTOMATIC1111 though no tensor was left (docs/troubleshooting.md)."""
    host_module("modules.devices").torch_gc()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the process's own C library: no search for it (find_library runs ldconfig)
    except (OSError, AttributeError):  # a C library without malloc_trim (musl): nothing to hand back
        pass
