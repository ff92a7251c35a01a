"""The fusion window in plain words, and back: "fuse the first 40 % of the denoising".

The stored values stay the paper's ``v1`` (a DDPM timestep, 0..1000) and ``mode``; the
words are another view of them, so an infotext written before the words existed pastes
into the same words. The denoising runs from t = 1000 (noise) to t = 0, so a share of it is
a share of that range:

- the first N %: mode 2 (fuse while t > v1), v1 = 1000 - 10 N;
- the last N %: mode 1 (fuse when t <= v1), v1 = 10 N;
- all: mode 2 with v1 = 0 (every step is above the edge);
- none: mode 0 (model A alone).

Which *steps* a share covers depends on the sampler's schedule (a Karras schedule spends
more steps at low noise): :func:`describe` counts them from the step timesteps the host
computes for the chosen sampler, scheduler and step count.
"""

from __future__ import annotations

from lib_fusion.arguments.schedule import T_MAX, is_fused

FIRST, LAST, ALL, NONE = "the first", "the last", "all", "none"
CHOICES = (FIRST, LAST, ALL, NONE)


def words_of(v1: float, mode: int) -> tuple[str, float]:
    """(choice, percent of the denoising) that means ``v1`` and ``mode``; the percent of
    ``all``/``none`` is the share the numbers would give with first/last (kept for the slider)."""
    if mode == 0:
        return NONE, round((T_MAX - v1) / 10, 1)
    if mode == 2:
        return (ALL, 100.0) if v1 <= 0 else (FIRST, round((T_MAX - v1) / 10, 1))
    return (ALL, 100.0) if v1 >= T_MAX else (LAST, round(v1 / 10, 1))


def numbers_of(choice: str, percent: float, v1: float) -> tuple[float, int]:
    """(v1, mode) that a choice and share mean; ``none`` keeps ``v1`` (it is not used)."""
    share = min(max(float(percent), 0.0), 100.0)
    if choice == FIRST:
        return round(T_MAX - 10 * share, 1), 2
    if choice == LAST:
        return round(10 * share, 1), 1
    if choice == ALL:
        return 0.0, 2
    if choice == NONE:
        return v1, 0
    raise ValueError(f"fuse: choose one of {', '.join(CHOICES)}, got {choice!r}")


def shows(choice: str, share: float, v1: float, mode: int) -> bool:
    """Whether the words on screen already mean these numbers, so neither is rewritten: the
    same fused timesteps exactly (the last 100 % is v1 = 1000, mode 1), or the numbers' own
    words to the 0.1 % shown (a pasted v1 = 605.3 stays 605.3). For ``none`` only the choice
    counts: the share is kept for when a part is chosen again."""
    if mode == 0 or choice == NONE:
        return mode == 0 and choice == NONE
    if numbers_of(choice, share, v1) == (v1, mode):
        return True
    return words_of(v1, mode) == (choice, round(float(share), 1))


def roles(solo: str, active: str, fusion: str) -> str:
    """Which checkpoint is model A (alone outside the fused part, kg) and which is B (ke)."""
    active_text = f"the active checkpoint ({active})" if active else "the active checkpoint"
    fusion_text = fusion or "the fusion checkpoint (none chosen)"
    a, b = (fusion_text, active_text) if solo == "fusion" else (active_text, fusion_text)
    return f"A = {a}, B = {b}."


def describe(v1: float, mode: int, timesteps: list[float] | None, sampler: str = "", strength: float | None = None) -> str:
    """One line: the timestep range the window means and, when the step timesteps of the
    chosen sampler are known, which of its steps fuse. ``strength``: img2img's denoising
    strength, at which the steps start part-way (a window they never reach is refused)."""
    if mode == 0:
        window = "no step fuses: model A runs alone"
    elif mode == 2:
        window = "fuses while t > " + f"{v1:g}" + " (t runs from 1000 to 0), then model A alone"
    else:
        window = "model A alone while t > " + f"{v1:g}" + ", then fuses down to t = 0"
    if mode == 0 or not timesteps:
        return window[0].upper() + window[1:]
    fused = [index + 1 for index, t in enumerate(timesteps) if is_fused(t, v1, mode)]
    total = len(timesteps)
    with_sampler = f" with {sampler}" if sampler else ""
    if strength is not None:
        with_sampler += f" at denoising strength {strength:g}"
    if not fused:
        steps = f"none of the {total} steps{with_sampler}"
        if strength is not None:
            steps += f" (they start at t = {max(timesteps):.0f}): a generation would be refused; raise the strength or move the window"
    elif len(fused) == total:
        steps = f"{'the one step' if total == 1 else f'all {total} steps'}{with_sampler}"
    else:
        steps = f"steps {_ranges(fused)} of {total}{with_sampler}"
    return f"{window[0].upper()}{window[1:]}: {steps}."


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 7 -> "1–3, 7"."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(f"{a}–{b}" if a != b else f"{a}" for a, b in spans)
