"""Callback registry with the host's length-keyed ordered cache and swallowed exceptions."""

import dataclasses

from modules import errors


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: object
    name: str = "unnamed"


CATEGORIES = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "before_ui", "script_unloaded", "app_started", "model_loaded", "ui_settings")
callback_map = {f"callbacks_{c}": [] for c in CATEGORIES}
ordered_callbacks_map = {}


def add_callback(callbacks, fun, *, name=None, category="unknown"):
    callback_name = f"model-fusion/{category}" + (f"/{name}" if name else "")
    unique = callback_name
    for index in range(1000):
        if not any(x.name == unique for x in callbacks):
            break
        unique = f"{callback_name}-{index + 1}"
    callbacks.append(ScriptCallback("extension", fun, unique))


def ordered_callbacks(category):
    unordered = callback_map.get("callbacks_" + category, [])
    cached = ordered_callbacks_map.get(category)
    if cached is not None and len(cached) == len(unordered):
        return cached
    ordered_callbacks_map[category] = list(unordered)
    return ordered_callbacks_map[category]


def _fire(category, *args):
    for c in ordered_callbacks(category):
        try:
            c.callback(*args)
        except Exception:
            errors.report(f"Error executing callback {c.name}", exc_info=True)


def cfg_denoiser_callback(params):
    _fire("cfg_denoiser", params)


def cfg_denoised_callback(params):
    _fire("cfg_denoised", params)


def cfg_after_cfg_callback(params):
    _fire("cfg_after_cfg", params)


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name, category="cfg_denoiser")


def on_cfg_denoised(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoised"], callback, name=name, category="cfg_denoised")


def on_cfg_after_cfg(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_after_cfg"], callback, name=name, category="cfg_after_cfg")


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name, category="script_unloaded")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def ui_settings_callback():
    _fire("ui_settings")


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def remove_callbacks_for_function(callback_func):
    for callback_list in callback_map.values():
        for cb in [cb for cb in callback_list if cb.callback == callback_func]:
            callback_list.remove(cb)
    for ordered in ordered_callbacks_map.values():
        for cb in [cb for cb in ordered if cb.callback == callback_func]:
            ordered.remove(cb)


def app_started_callback(demo, app):
    _fire("app_started", demo, app)


def before_ui_callback():
    _fire("before_ui")


def script_unloaded_callback():
    _fire("script_unloaded")


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()
    ordered_callbacks_map.clear()


PER_GENERATION = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg")
"""Categories an extension should hold only while it generates."""


def registered_count(categories=PER_GENERATION):
    return sum(len(callback_map[f"callbacks_{c}"]) for c in categories)
