"""Forge's UNet patcher (``backend/patcher/base.py`` + ``unet.py``) as extensions use it."""

import copy

import flavour

from backend.modules.k_model import KModel


def _copy_containers(value):
    """Neo's ``utils.deepcopy_``: dicts and lists copied all the way down, anything else shared."""
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_containers(item) for item in value]
    return value


class UnetPatcher:
    def __init__(self, model, load_device="cpu", offload_device="cpu"):
        self.model = model
        self.load_device, self.offload_device, self.current_device = load_device, offload_device, offload_device
        self.model_options = {"transformer_options": {}}
        self.controlnet_linked_list = None
        self.extra_preserved_memory_during_sampling = 0
        self.extra_model_patchers_during_sampling = []
        self.extra_concat_condition = None

    @classmethod
    def from_model(cls, model, alphas_cumprod, prediction_type="epsilon", predictor=None):
        return cls(KModel(model, alphas_cumprod, prediction_type, predictor))

    def clone(self):
        n = UnetPatcher(self.model, self.load_device, self.offload_device)
        n.current_device = self.current_device
        if flavour.neo():  # re-ported from ComfyUI: containers copied, their contents shared; a parent kept
            n.model_options = _copy_containers(self.model_options)
            n.parent = self
        else:
            n.model_options = copy.deepcopy(self.model_options)
        n.controlnet_linked_list = self.controlnet_linked_list
        n.extra_preserved_memory_during_sampling = self.extra_preserved_memory_during_sampling
        n.extra_model_patchers_during_sampling = self.extra_model_patchers_during_sampling.copy()
        n.extra_concat_condition = self.extra_concat_condition
        return n

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def memory_required(self, input_shape):
        return self.model.memory_required(input_shape)

    def model_dtype(self):
        return self.model.computation_dtype

    def set_model_sampler_cfg_function(self, sampler_cfg_function, disable_cfg1_optimization=False):
        self.model_options["sampler_cfg_function"] = sampler_cfg_function
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, post_cfg_function, disable_cfg1_optimization=False):
        self.model_options["sampler_post_cfg_function"] = self.model_options.get("sampler_post_cfg_function", []) + [post_cfg_function]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_unet_function_wrapper(self, unet_wrapper_function):
        self.model_options["model_function_wrapper"] = unet_wrapper_function

    def append_model_option(self, k, v, ensure_uniqueness=False):
        self.model_options.setdefault(k, [])
        if not (ensure_uniqueness and v in self.model_options[k]):
            self.model_options[k].append(v)

    def add_conditioning_modifier(self, modifier, ensure_uniqueness=False):
        self.append_model_option("conditioning_modifiers", modifier, ensure_uniqueness)

    def add_sampler_pre_cfg_function(self, modifier, ensure_uniqueness=False):
        self.append_model_option("sampler_pre_cfg_function", modifier, ensure_uniqueness)

    def add_extra_model_patcher_during_sampling(self, model_patcher):
        self.extra_model_patchers_during_sampling.append(model_patcher)
