"""The fusion checkpoint on Forge: loaded whole by Forge's own loader (its UNet, text
encoders and VAE, any family Forge knows), cached like on AUTOMATIC1111, and handed to
Forge's memory manager, which places it during sampling and is told when it is dropped."""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

from modules import shared

from lib_fusion.arguments.args import TITLE
from lib_fusion.arguments.messages import shown
from lib_fusion.engine.checkpoint_cache import CACHE, CacheKey, FusionModelError
from lib_fusion.host.checkpoints import check_header, is_active_checkpoint, without_path
from lib_fusion.host.loading import FusionModel
from lib_fusion.host.probe import host_module


def load_fusion_model(info: Any, need_text_encoder: bool, capacity: int = 1) -> FusionModel:
    """Cached engine of the fusion checkpoint; the active one is reused, never reloaded.
    Without ``need_text_encoder`` its text encoders are let go once it is built."""
    if is_active_checkpoint(info):
        return FusionModel(info.title, None, None)
    loading = _active_loading()
    family = ("forge", type(shared.sd_model).__name__, tuple(loading["additional_modules"]), str(loading["unet_storage_dtype"]))
    try:
        key = CacheKey.for_file(info.filename, family, ("unet", "text_encoder") if need_text_encoder else ("unet",))
    except OSError as error:
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {shown(info.title)} cannot be read from disk ({error.strerror or error}); "
            "it was moved or deleted: refresh the checkpoint list and choose another"
        ) from None
    return CACHE.get(key, lambda: _build(info, loading, need_text_encoder), capacity)


def _active_loading() -> dict[str, Any]:
    """How the host loaded the active checkpoint (``model_data.forge_loading_parameters``): the
    separate modules beside it (a flow family's text encoders and VAE, or a VAE chosen for an SD
    one) and the UNet's storage dtype. The fusion checkpoint is loaded with the same, so that a
    DiT shared without its text encoders loads, and with the active model's encoders and VAE."""
    parameters = getattr(getattr(_sd_models(), "model_data", None), "forge_loading_parameters", None) or {}
    return {
        "additional_modules": list(parameters.get("additional_modules") or []),
        "unet_storage_dtype": parameters.get("unet_storage_dtype"),
    }


def _sd_models() -> Any:
    return host_module("modules.sd_models")


def _build(info: Any, loading: dict[str, Any], need_text_encoder: bool) -> FusionModel:
    dynamic_args = host_module("backend.args", "to load a checkpoint the way Forge does").dynamic_args
    forge_loader = host_module("backend.loader", "to load a checkpoint the way Forge does").forge_loader
    check_header(info)  # a wrong or broken file is named before Forge reads gigabytes of it
    # Read by the engine as it is built (text encoder emphasis, embeddings), and on Neo reset by
    # its loader: set as the host sets them for its own model, and put back afterwards.
    with _kept(dynamic_args):
        dynamic_args["embedding_dir"] = getattr(shared.cmd_opts, "embeddings_dir", None)
        dynamic_args["emphasis_name"] = getattr(shared.opts, "emphasis", "Original")
        dynamic_args["forge_unet_storage_dtype"] = loading["unet_storage_dtype"]
        try:  # a path: Forge reads the file (and a .yaml beside it)
            engine = forge_loader(info.filename, additional_state_dicts=loading["additional_modules"])
        except Exception as error:
            raise FusionModelError(f"{TITLE}: cannot load fusion checkpoint {info.title!r}: {without_path(str(error), info)}") from error
    active = shared.sd_model
    if type(engine) is not type(active):
        raise FusionModelError(
            f"{TITLE}: fusion checkpoint {info.title!r} is not of the active checkpoint's family: it loads as "
            f"{type(engine).__name__}, the active one is {type(active).__name__}. Choose a checkpoint of the same family "
            "(SD1 with SD1, SDXL with SDXL)."
        )
    engine.sd_checkpoint_info = info
    _let_go_of_unused_parts(engine, need_text_encoder)
    return FusionModel(info.title, engine.forge_objects.unet, engine if need_text_encoder else None, free=lambda: _forget(engine))


def _let_go_of_unused_parts(engine: Any, need_text_encoder: bool) -> None:
    """Free what the fusion never runs, as soon as Forge's loader has built it whole: the VAE
    (the active model decodes every image) and, unless a prompt is encoded by this checkpoint,
    its text encoders, which are most of a flow family's checkpoint (Flux's T5-XXL: 9.5 GB in
    fp16). Their weights go to torch's meta device: the modules keep their shapes, hold no
    memory, and are never called (a later need of the encoder loads the file again)."""
    import torch

    objects = engine.forge_objects
    unused = [getattr(objects.vae, "first_stage_model", None)]
    if not need_text_encoder:
        unused.append(getattr(objects.clip, "cond_stage_model", None))
    for module in unused:
        if isinstance(module, torch.nn.Module):
            module.to("meta")


def _fields(dynamic_args: Any) -> dict[str, Any]:
    """The values in Forge's ``dynamic_args``: a dict's items (Forge main), or the data
    attributes of a class read through its metaclass (Neo)."""
    if isinstance(dynamic_args, dict):
        return dict(dynamic_args)
    return {
        name: value
        for name, value in vars(dynamic_args).items()
        if not name.startswith("_") and not callable(value) and not isinstance(value, (classmethod, staticmethod))
    }


@contextlib.contextmanager
def _kept(dynamic_args: Any) -> Iterator[None]:
    """Forge's ``dynamic_args`` as they were before the block, each value copied: Neo's loader
    resets them (clearing its lists in place) and sets flags from the loaded file's name."""
    saved = {name: copy.copy(value) for name, value in _fields(dynamic_args).items()}
    try:
        yield
    finally:
        for name in _fields(dynamic_args).keys() - saved.keys():  # set by the block alone
            if isinstance(dynamic_args, dict):
                del dynamic_args[name]
            else:
                delattr(dynamic_args, name)
        for name, value in saved.items():
            dynamic_args[name] = value


def _forget(engine: Any) -> None:
    """Tell Forge's memory manager to let go of the engine's parts it placed (dropping our
    reference alone would leave them in its list, and on the device)."""
    memory_management = host_module("backend.memory_management", "to free a checkpoint Forge placed")
    objects = engine.forge_objects
    patchers = {id(part) for part in (objects.unet, getattr(objects.clip, "patcher", None), getattr(objects.vae, "patcher", None)) if part}
    for loaded in list(memory_management.current_loaded_models):
        if id(loaded.model) in patchers:
            memory_management.current_loaded_models.remove(loaded)
            loaded.model_unload()
            continue
        extras = getattr(loaded.model, "extra_model_patchers_during_sampling", None)
        if extras:  # a UNet clone that sampled with it (another extension's copy of ours)
            extras[:] = [extra for extra in extras if id(extra) not in patchers]
    memory_management.soft_empty_cache()
