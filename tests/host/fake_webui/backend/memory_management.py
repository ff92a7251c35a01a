"""Forge's memory manager in outline: the models it placed, loads and unloads (all on the
CPU here); tests read ``loads`` and ``current_loaded_models``."""

import weakref

signal_empty_cache = False
current_loaded_models = []
loads = []
"""Per ``load_models_gpu`` call: weak references to the patchers it was asked to place (the
stand-in's own record; weak, so that it keeps no model alive)."""


class LoadedModel:
    def __init__(self, model):
        self.model = model

    def model_unload(self, avoid_model_moving=False):
        self.model.current_device = self.model.offload_device


def load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    loads.append([weakref.ref(model) for model in models])
    for model in models:  # a newer clone of a placed model replaces it (unload_model_clones)
        for loaded in [loaded for loaded in current_loaded_models if loaded.model is not model and model.is_clone(loaded.model)]:
            current_loaded_models.remove(loaded)
    for model in models:
        if not any(loaded.model is model for loaded in current_loaded_models):
            current_loaded_models.insert(0, LoadedModel(model))
        model.current_device = model.load_device


def load_model_gpu(model):
    load_models_gpu([model])


def unload_all_models():
    while current_loaded_models:
        current_loaded_models.pop().model_unload()


def soft_empty_cache(force=False):
    global signal_empty_cache


signal_empty_cache = False


def get_free_memory(dev=None, torch_free_too=False):
    return 1 << 40
