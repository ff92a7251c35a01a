"""Text conditioning in the WebUI's two shapes: a tensor (SD1/SD2) or a dict (SDXL).

Rows are images (or ``AND`` sub-prompts); SDXL keeps ``crossattn`` and ``vector`` per row.
"""

from __future__ import annotations

import torch

Cond = torch.Tensor | dict


def cat_conds(conds: list[Cond]) -> Cond:
    """Stack rows of several conditionings of one kind."""
    if isinstance(conds[0], dict):
        return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}
    return torch.cat(conds)


def take_rows(cond: Cond, rows: list[int]) -> Cond:
    """The given rows, in order (duplicates allowed)."""
    index = torch.tensor(rows, dtype=torch.long)
    if isinstance(cond, dict):
        return {key: value[index.to(value.device)] for key, value in cond.items()}
    return cond[index.to(cond.device)]


def token_width(cond: Cond) -> int:
    """Token length of the cross-attention context (75-token chunks + 2 per chunk)."""
    tensor = cond["crossattn"] if isinstance(cond, dict) else cond
    return int(tensor.shape[1])


def row_count(cond: Cond) -> int:
    tensor = cond["crossattn"] if isinstance(cond, dict) else cond
    return int(tensor.shape[0])
