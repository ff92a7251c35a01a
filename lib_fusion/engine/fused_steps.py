"""No fusion that does nothing wears the label: after a batch is sampled, whether every
checkpoint the arguments name took part in at least one fused step, and if not, why, and
which ``fusion_selection`` would fuse.

A window is absolute in DDPM timesteps (the paper's ``v1``), so an img2img or hires pass that
starts part-way (at its denoising strength) can hold no step of it: the image is then the
active checkpoint alone, and it must not be returned as a fusion. Counted from what the run
saw (``Stats``), so it holds on every sampler, schedule and host.
"""

from __future__ import annotations

import math

from lib_fusion.arguments.args import TITLE, FusionArgs
from lib_fusion.arguments.schedule import StepKind, format_fusion_selection, is_fused
from lib_fusion.engine.sampling_pass import FUSED, Stats
from lib_fusion.methods import method_of


def never_fused(args: FusionArgs, stats: Stats) -> str | None:
    """Why this generation is not a fusion of every checkpoint it names (None: it is, or no
    step was sampled). Regions run every region's checkpoint on every step: nothing to check.
    Nor is a schedule that fuses nothing by its own definition (mode 0, guidance at w = 1):
    with A the active checkpoint the host never calls the run, and with A the fusion
    checkpoint it is that checkpoint alone on purpose (``solo``)."""
    method = method_of(args)
    if not method.two_model or method.alone_throughout(args):
        return None
    seen = [t for t, variant in zip(stats.timesteps, stats.variants) if variant == FUSED]
    if not seen:
        return None
    fused = [t for t, kind, variant in zip(stats.timesteps, stats.kinds, stats.variants) if variant == FUSED and kind == StepKind.FUSED]
    if not fused:
        return window_missed(args, seen)
    for index, entry in enumerate(args.models):
        if stats.more_runs[entry.model] == 0:
            place = args.fusion_checkpoint_place(index)
            return (
                f"{TITLE}: {place}.model {entry.model!r} joined no fused step: its window {entry.window} holds none of "
                f"the fused steps (t = {max(fused):.0f} down to {min(fused):.0f}), so the image would not be fused by it and "
                "was not kept; widen its window or leave it out"
            )
    return None


def window_missed(args: FusionArgs, seen: list[float], planned: str = "") -> str:
    """The refusal of a generation whose steps (``seen``; ``planned``: what the steps are
    planned for, e.g. ``img2img``, when known before sampling) fall outside the window: their
    range, the rule, and a ``fusion_selection`` that fuses the same share of them."""
    v1, kg, ke = args.selection
    rule = f"t <= {v1:g}" if args.mode == 1 else f"t > {v1:g}"
    why = f"fusion_selection v1 = {v1:g} with mode {args.mode} fuses only {rule}"
    count = len(seen)
    if planned:
        opening = f"no step of this {planned} falls inside the fusion window, so the image would be one model alone: its {count} steps run"
    else:
        opening = f"no step fell inside the fusion window, so the image would be one model alone and was not kept: the {count} steps ran"
    text = (
        f"{TITLE}: {opening} at t = {max(seen):.0f} down to {min(seen):.0f} (img2img and hires fix start part-way, "
        f"at their denoising strength) and {why}"
    )
    advice = suggested_v1(args, seen)
    if advice is not None:
        new_v1, fused = advice
        text += f'; fusion_selection "{format_fusion_selection(new_v1, kg, ke)}" fuses {fused} of these steps'
    return text + (" (or raise the denoising strength)" if args.mode == 2 else "")


def suggested_v1(args: FusionArgs, seen: list[float]) -> tuple[float, int] | None:
    """A v1 that fuses about the share of these steps the user's window meant of the whole
    denoising (mode 2: the first ``(1000 - v1) / 1000``; mode 1: the last ``v1 / 1000``), and
    how many it fuses; None for mode 0, or when no v1 fuses any of these steps."""
    v1 = args.selection[0]
    if args.mode not in (1, 2):
        return None
    share = (1000.0 - v1) / 1000.0 if args.mode == 2 else v1 / 1000.0
    count = max(1, round(share * len(seen)))
    if args.mode == 2:  # fuse while t > v1: just below the count-th highest step
        new_v1 = max(0.0, math.floor(sorted(seen, reverse=True)[count - 1]) - 1.0)
    else:  # fuse when t <= v1: at the count-th lowest step
        ordered = sorted(seen)
        new_v1 = min(1000.0, float(math.ceil(ordered[count - 1])))
        if new_v1 <= 0.0:  # v1 = 0 puts every step above it (is_above): one just above t = 0 fuses that step alone
            above = ordered[count] if count < len(ordered) else 1.0  # the next step's t: v1 stays below it
            new_v1 = float(math.floor(above / 2)) if above >= 2 else above / 2
    fused = sum(is_fused(t, new_v1, args.mode) for t in seen)
    return (new_v1, fused) if fused else None
