"""Text conditioning in the WebUI's two shapes: a tensor (SD1/SD2) or a dict (SDXL).

Rows are images (or ``AND`` sub-prompts); SDXL keeps ``crossattn`` and ``vector`` per row.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Cond = torch.Tensor | dict

WidthJoin = Literal["equal", "repeat"]
"""How the host batches conditionings of different token widths: ``equal``, only those of one
width (AUTOMATIC1111); ``repeat``, each context repeated along its tokens to the widths' least
common multiple (Forge's ``ConditionCrossAttn``, up to :data:`MAX_REPEAT` times the shorter)."""

MAX_REPEAT = 4
"""Forge joins two widths only while their least common multiple is at most 4 times the shorter."""


def cat_conds(conds: list[Cond]) -> Cond:
    """Stack rows of several conditionings of one kind."""
    if isinstance(conds[0], dict):
        return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}
    return torch.cat(conds)


def as_batched(conds: list[Cond], rule: WidthJoin) -> list[Cond] | None:
    """``conds`` as the host would batch them together, each context at the batch's width, or
    None where it runs them apart. ``repeat`` follows Forge's ``ConditionCrossAttn.can_concat``
    (each width against the first) and ``concat`` (every context repeated to the least common
    multiple): a DiT that attends over text and image tokens together sees the repeated
    context, so a model run by the fusion gives the host's own result only in the same form."""
    widths = [token_width(cond) for cond in conds]
    if len(set(widths)) == 1:
        return conds
    if rule != "repeat" or any(math.lcm(widths[0], width) // min(widths[0], width) > MAX_REPEAT for width in widths):
        return None
    target = math.lcm(*widths)

    def repeated(cond: Cond) -> Cond:
        if isinstance(cond, dict):
            return {**cond, "crossattn": repeated(cond["crossattn"])}
        return cond if cond.shape[1] == target else cond.repeat(1, target // cond.shape[1], 1)

    return [repeated(cond) for cond in conds]


def runs(rows: list[int]) -> list[tuple[int, int]]:
    """``rows`` as maximal ``[start, stop)`` runs of consecutive rows, in order."""
    spans: list[tuple[int, int]] = []
    for row in rows:
        if spans and spans[-1][1] == row:
            spans[-1] = (spans[-1][0], row + 1)
        else:
            spans.append((row, row + 1))
    return spans


def pick(tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """``tensor[rows]`` made of slices: no index tensor goes to the device, and rows that
    are already in order (one run) come back as a view, not a copy."""
    spans = runs(rows)
    if not spans:
        return tensor[:0]
    if len(spans) == 1:
        return tensor[spans[0][0] : spans[0][1]]
    return torch.cat([tensor[start:stop] for start, stop in spans])


def take_rows(cond: Cond, rows: list[int]) -> Cond:
    """The given rows, in order (duplicates allowed), as :func:`pick` takes them."""
    if isinstance(cond, dict):
        return {key: pick(value, rows) for key, value in cond.items()}
    return pick(cond, rows)


def token_width(cond: Cond) -> int:
    """Token length of the cross-attention context (75-token chunks + 2 per chunk)."""
    tensor = cond["crossattn"] if isinstance(cond, dict) else cond
    return int(tensor.shape[1])


def row_count(cond: Cond) -> int:
    tensor = cond["crossattn"] if isinstance(cond, dict) else cond
    return int(tensor.shape[0])
