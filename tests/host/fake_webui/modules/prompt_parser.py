"""Prompts to conditioning with the host's data shapes: AND sub-prompts with weights and
``[from:to:when]`` prompt editing (one level), reconstructed per denoiser step."""

import re
from collections import namedtuple

import torch

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
ComposableScheduledPromptConditioning = namedtuple("ComposableScheduledPromptConditioning", ["schedules", "weight"])
MulticondLearnedConditioning = namedtuple("MulticondLearnedConditioning", ["shape", "batch"])

_EDIT = re.compile(r"\[([^\[\]:]*):([^\[\]:]*):([0-9.]+)\]")
_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^(.*?)(?::\s*([-+]?[0-9.]+))?\s*$", re.S)


class SdConditioning(list):
    def __init__(self, prompts, is_negative_prompt=False, width=None, height=None, copy_from=None, distilled_cfg_scale=None):
        super().__init__(prompts)
        self.distilled_cfg_scale = distilled_cfg_scale or getattr(copy_from, "distilled_cfg_scale", None)
        """Forge's and Neo's: the Distilled CFG Scale the Flux engine puts in its conditioning."""
        copy_from = copy_from if copy_from is not None else prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def schedules_for(prompt, steps):
    match = _EDIT.search(prompt)
    if not match:
        return [(steps, prompt)]
    when = float(match.group(3))
    at = int(when * steps) if when < 1 else int(when)
    before = prompt[: match.start()] + match.group(1) + prompt[match.end() :]
    after = prompt[: match.start()] + match.group(2) + prompt[match.end() :]
    return [(at, before), (steps, after)]


def _learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    total = hires_steps or steps
    result = []
    for prompt in prompts:
        schedules = schedules_for(prompt, total)
        texts = SdConditioning([text for _, text in schedules], copy_from=prompts)
        conds = model.get_learned_conditioning(texts)
        result.append([ScheduledPromptConditioning(end, _row(conds, i)) for i, (end, _) in enumerate(schedules)])
    return result


def _row(conds, i):
    return {key: value[i] for key, value in conds.items()} if isinstance(conds, dict) else conds[i]


def get_multicond_prompt_list(prompts):
    res_indexes, flat = [], []
    for prompt in prompts:
        indexes = []
        for subprompt in _AND.split(prompt):
            text, weight = _WEIGHT.match(subprompt).groups()
            indexes.append((len(flat), 1.0 if weight is None else float(weight)))
            flat.append(text.strip())
        res_indexes.append(indexes)
    return res_indexes, flat


def _multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    res_indexes, flat = get_multicond_prompt_list(prompts)
    flat = SdConditioning(flat, copy_from=prompts)
    learned = _learned_conditioning(model, flat, steps, hires_steps, use_old_scheduling)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in indexes] for indexes in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _neo_learned_conditioning(model, prompts, steps, hires_steps=None):
    return _learned_conditioning(model, prompts, steps, hires_steps)


def _neo_multicond_learned_conditioning(model, prompts, steps, hires_steps=None):
    return _multicond_learned_conditioning(model, prompts, steps, hires_steps)


def use_signatures(neo):
    """The two encoding functions with AUTOMATIC1111's and Forge's signature (a
    ``use_old_scheduling`` argument), or Neo's (none): see ``flavour.py``."""
    global get_learned_conditioning, get_multicond_learned_conditioning
    get_learned_conditioning = _neo_learned_conditioning if neo else _learned_conditioning
    get_multicond_learned_conditioning = _neo_multicond_learned_conditioning if neo else _multicond_learned_conditioning


get_learned_conditioning = _learned_conditioning
get_multicond_learned_conditioning = _multicond_learned_conditioning


def _pick(schedules, step):
    for entry in schedules:
        if step <= entry.end_at_step:
            return entry.cond
    return schedules[0].cond


class DictWithShape(dict):
    """SDXL conditioning (``crossattn``, ``vector``) that also answers ``.shape`` like a tensor."""

    def __init__(self, x, shape=None):
        super().__init__()
        self.update(x)

    @property
    def shape(self):
        return self["crossattn"].shape


def _stack_padded(tensors):
    if isinstance(tensors[0], dict):
        return DictWithShape({key: _stack_padded([t[key] for t in tensors]) for key in tensors[0]})
    if tensors[0].ndim == 0:  # one number per prompt (Flux's distilled guidance)
        return torch.stack(tensors)
    width = max(t.shape[0] for t in tensors)
    padded = [torch.cat([t, t[-1:].repeat(width - t.shape[0], 1)]) if t.shape[0] < width else t for t in tensors]
    return torch.stack(padded)


def reconstruct_cond_batch(c, current_step):
    return _stack_padded([_pick(schedules, current_step) for schedules in c])


def reconstruct_multicond_batch(c, current_step):
    tensors, conds_list = [], []
    for composable_prompts in c.batch:
        conds = []
        for composable in composable_prompts:
            conds.append((len(tensors), composable.weight))
            tensors.append(_pick(composable.schedules, current_step))
        conds_list.append(conds)
    return conds_list, _stack_padded(tensors)
