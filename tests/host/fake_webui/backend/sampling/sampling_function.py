"""Forge's sampling function (``backend/sampling/sampling_function.py``) to its contract:
conditioning modifiers, pre-CFG functions, ``calc_cond_uncond_batch`` (conds of one shape
batched, each output weighted by its strength and averaged), CFG with the ``AND`` edit
strength, ``sampler_cfg_function``, then the post-CFG list. Areas and masks are not
modelled (the extension sends neither)."""

import math

import flavour
import torch

from backend import memory_management
from backend.sampling.condition import Condition, compile_conditions, compile_weighted_conditions

COND, UNCOND = 0, 1


def _prepared(conds, x_in):
    strength = conds.get("strength", 1.0)
    conditioning = {key: c.process_cond(batch_size=x_in.shape[0], device=x_in.device) for key, c in conds["model_conds"].items()}
    return x_in, torch.ones_like(x_in) * strength, conditioning, conds.get("control")


def _can_concat(a, b):
    if a[0].shape != b[0].shape or a[3] is not b[3] or a[2].keys() != b[2].keys():
        return False
    return all(a[2][k].can_concat(b[2][k]) for k in a[2])


def calc_cond_uncond_batch(model, cond, uncond, x_in, timestep, model_options):
    out_cond, out_count = torch.zeros_like(x_in), torch.ones_like(x_in) * 1e-37
    out_uncond, out_uncond_count = torch.zeros_like(x_in), torch.ones_like(x_in) * 1e-37
    to_run = [(_prepared(c, x_in), COND) for c in cond]
    if uncond is not None:
        to_run += [(_prepared(c, x_in), UNCOND) for c in uncond]
    while to_run:
        first = to_run[0][0]
        batch = [i for i in range(len(to_run)) if _can_concat(to_run[i][0], first)]
        batch.reverse()
        picked = [to_run.pop(i) for i in batch]
        cond_or_uncond = [kind for _, kind in picked]
        input_x = torch.cat([p[0] for p, _ in picked])
        keys = picked[0][0][2].keys()
        c = {k: picked[0][0][2][k].concat([p[2][k] for p, _ in picked[1:]]) for k in keys}
        timestep_ = torch.cat([timestep] * len(picked))
        transformer_options = dict(model_options.get("transformer_options", {}))
        transformer_options["cond_or_uncond"] = cond_or_uncond[:]
        transformer_options["sigmas"] = timestep
        c["transformer_options"] = transformer_options
        control = picked[0][0][3]
        if control is not None:
            c["control"] = control.get_control(input_x, timestep_, dict(c), len(cond_or_uncond))
        if "model_function_wrapper" in model_options:
            output = model_options["model_function_wrapper"](
                model.apply_model, {"input": input_x, "timestep": timestep_, "c": c, "cond_or_uncond": cond_or_uncond}
            )
        else:
            output = model.apply_model(input_x, timestep_, **c)
        for (p, kind), o in zip(picked, output.chunk(len(picked))):
            if kind == COND:
                out_cond += o * p[1]
                out_count += p[1]
            else:
                out_uncond += o * p[1]
                out_uncond_count += p[1]
    return out_cond / out_count, out_uncond / out_uncond_count


def sampling_function_inner(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None, return_full=False):  # noqa: B006 (Forge's signature)
    edit_strength = sum(item.get("strength", 1) for item in cond)
    uncond_ = None if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False) else uncond
    for fn in model_options.get("sampler_pre_cfg_function", []):
        model, cond, uncond_, x, timestep, model_options = fn(model, cond, uncond_, x, timestep, model_options)
    cond_pred, uncond_pred = calc_cond_uncond_batch(model, cond, uncond_, x, timestep, model_options)
    if "sampler_cfg_function" in model_options:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": timestep, "input": x,
                "sigma": timestep, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred, "model": model,
                "model_options": model_options}  # fmt: skip
        cfg_result = x - model_options["sampler_cfg_function"](args)
    elif not math.isclose(edit_strength, 1.0):
        cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale * edit_strength
    else:
        cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {"denoised": cfg_result, "cond": cond, "uncond": uncond, "model": model, "uncond_denoised": uncond_pred,
                "cond_denoised": cond_pred, "sigma": timestep, "model_options": model_options, "input": x}  # fmt: skip
        if flavour.neo():
            args["cond_scale"] = cond_scale
        cfg_result = fn(args)
    if return_full:
        return cfg_result, cond_pred, uncond_pred
    return cfg_result


def sampling_function(self, denoiser_params, cond_scale, cond_composition):
    """Forge main's: the patcher's own options."""
    return _sampling_function(self, denoiser_params, cond_scale, cond_composition, None)


def neo_sampling_function(self, denoiser_params, cond_scale, cond_composition, extra_model_options=None):
    """Neo's: the patcher's options joined with the sampler's into a new dict."""
    return _sampling_function(self, denoiser_params, cond_scale, cond_composition, extra_model_options or {})


def _join_dicts(a, b):
    """Neo's ``utils.join_dicts``: a new dict, lists of both joined, b's other values winning."""
    joined = dict(a)
    for key, value in b.items():
        joined[key] = joined[key] + value if isinstance(value, list) and isinstance(joined.get(key), list) else value
    return joined


def _sampling_function(self, denoiser_params, cond_scale, cond_composition, extra_model_options):
    unet_patcher = self.inner_model.inner_model.forge_objects.unet
    model = unet_patcher.model
    x, timestep = denoiser_params.x, denoiser_params.sigma
    uncond = compile_conditions(denoiser_params.text_uncond)
    cond = compile_weighted_conditions(denoiser_params.text_cond, cond_composition)
    options = unet_patcher.model_options
    model_options = options if extra_model_options is None else _join_dicts(options, extra_model_options)
    seed = self.p.seeds[0]
    image_cond_in = unet_patcher.extra_concat_condition if unet_patcher.extra_concat_condition is not None else denoiser_params.image_cond
    if isinstance(image_cond_in, torch.Tensor) and image_cond_in.shape[0] == x.shape[0] and image_cond_in.shape[2:] == x.shape[2:]:
        for c in (uncond or []) + cond:
            c["model_conds"]["c_concat"] = Condition(image_cond_in)
    if unet_patcher.controlnet_linked_list is not None:
        for c in (uncond or []) + cond:
            c["control"] = unet_patcher.controlnet_linked_list
    for modifier in model_options.get("conditioning_modifiers", []):
        model, x, timestep, uncond, cond, cond_scale, model_options, seed = modifier(
            model, x, timestep, uncond, cond, cond_scale, model_options, seed
        )
    return sampling_function_inner(model, x, timestep, uncond, cond, cond_scale, model_options, seed, return_full=True)


def sampling_prepare(unet, x):
    memory_management.load_models_gpu(models=[unet] + unet.extra_model_patchers_during_sampling)


def sampling_cleanup(unet):
    pass
