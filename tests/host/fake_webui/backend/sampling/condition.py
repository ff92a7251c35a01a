"""Forge's compiled conditions (``backend/sampling/condition.py``): a dict per cond with the
model's inputs as ``Condition`` objects that repeat to the batch and concatenate."""

import math

import torch


def repeat_to_batch_size(tensor, batch_size):
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        return tensor.repeat([math.ceil(batch_size / tensor.shape[0])] + [1] * (len(tensor.shape) - 1))[:batch_size]
    return tensor


class Condition:
    def __init__(self, cond):
        self.cond = cond

    def process_cond(self, batch_size, device, **kwargs):
        return self.__class__(repeat_to_batch_size(self.cond, batch_size).to(device))

    def can_concat(self, other):
        return self.cond.shape == other.cond.shape

    def concat(self, others):
        return torch.cat([self.cond] + [x.cond for x in others])


class ConditionCrossAttn(Condition):
    def can_concat(self, other):
        s1, s2 = self.cond.shape, other.cond.shape
        if s1 != s2:
            if s1[0] != s2[0] or s1[2] != s2[2]:
                return False
            if math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) > 4:
                return False
        return True

    def concat(self, others):
        conds = [self.cond] + [x.cond for x in others]
        width = math.lcm(*[c.shape[1] for c in conds])
        return torch.cat([c.repeat(1, width // c.shape[1], 1) if c.shape[1] < width else c for c in conds])


def compile_conditions(cond):
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        return [dict(cross_attn=cond, model_conds=dict(c_crossattn=ConditionCrossAttn(cond)))]
    model_conds = dict(c_crossattn=ConditionCrossAttn(cond["crossattn"]), y=Condition(cond["vector"]))
    if "guidance" in cond:  # Flux's distilled guidance, one number per row
        model_conds["guidance"] = Condition(cond["guidance"])
    return [dict(cross_attn=cond["crossattn"], pooled_output=cond["vector"], model_conds=model_conds)]


def compile_weighted_conditions(cond, weights):
    """One compiled cond per ``AND`` position (the j-th sub-prompt of every image), its
    strength the (last image's) weight."""
    results = []
    for position in map(list, zip(*weights)):
        indices = [index for index, _ in position]
        feed = {k: v[indices] for k, v in cond.items()} if isinstance(cond, dict) else cond[indices]
        compiled = compile_conditions(feed)
        compiled[0]["strength"] = position[-1][1]
        results += compiled
    return results
