"""The accordion's words that are not labels: hover hints (the WebUI shows a component's
``tooltip`` as its title) and the one-line status of the fusion checkpoint. No gradio here,
so the tests read them."""

from __future__ import annotations

import html
from typing import Any

HINTS: dict[str, str] = {
    "enabled": "Fuse this generation with a second checkpoint. Off: the WebUI's own generation, bit for bit.",
    "method": "snb: each pixel from the model that cares most about it (MagicFusion). regions: a prompt and checkpoint per "
    "region, and wide panoramas (MultiDiffusion). guidance: push the active model away from a weaker one. base_uncond: the "
    "fusion checkpoint's negative prediction under the active one's positive.",
    "preset": "Fills several controls at once; changing any of them shows custom.",
    "model": "The second checkpoint. Only checkpoints of the active one's family are listed (SD1 with SD1, SDXL with SDXL).",
    "refresh": "Read the checkpoint folder again.",
    "unload": "Free the memory of the fusion checkpoint; it loads again with the next fused generation.",
    "prompt": "What the fusion checkpoint is asked for; empty: the main prompt. Its subject and style show where it wins.",
    "negative_prompt": "The fusion checkpoint's negative prompt; empty: the main one.",
    "fuse": "Which part of the denoising blends both checkpoints: the first steps set the composition, the last the details. "
    "Outside it model A runs alone.",
    "share": "How much of the denoising, from noise (t = 1000) down to the image (t = 0).",
    "kg": "Model A's saliency factor: higher sharpens A's map, so A keeps fewer but surer pixels.",
    "ke": "Model B's saliency factor: higher sharpens B's map, so B keeps fewer but surer pixels.",
    "guidance_weight": "1 is plain CFG; above 1 pushes the image away from what the fusion checkpoint would make.",
    "compare": "Also return each checkpoint alone from the same seed, and a labelled grid of the three.",
    "preview": "Also return what decided the fusion: each model's saliency and the mask, or the regions coloured by checkpoint.",
    "text_encoder": "solo: both prompts through model A's text encoder (the paper); own: each checkpoint reads its prompt with "
    "its own text encoder (for fine-tunes that retrained it).",
    "solo": "Model A: the checkpoint that runs alone outside the fused part of the denoising.",
    "fusion_selection": "The paper's v1,kg,ke: the window edge as a DDPM timestep, then A's and B's saliency factors.",
    "mode": "0: A alone throughout; 1: fuse when t <= v1 (the last part); 2: fuse while t > v1 (the first part).",
    "saliency_uncond": "solo: B's response measured against A's negative prediction (the official code); own: against its own.",
    "blur": "How the saliency maps are smoothed: the official 4x4 box, a Gaussian, or Face-diffuser's 3x3 Gaussian.",
    "mask": "hard: each pixel from one model (the paper); soft: a blend by B's share; mean: half of each (no saliency).",
    "mask_ema": "Smooths the saliency over the steps so fewer pixels flip between models; 0 = a fresh map every step.",
    "mask_freeze": "Keep the mask fixed after this many fused steps; 0 = never.",
    "per_channel": "A saliency map and mask per latent channel instead of one for all four.",
    "regions": "The regions as JSON: what the API and the infotext carry; the canvas and table edit it.",
    "background": "Which checkpoint denoises the background (the main prompt, wherever no region covers it): the active one, "
    "the fusion checkpoint, or any listed checkpoint by title, name or hash.",
    "models": "SNB over more checkpoints: each entry is fused per pixel with model A and the fusion checkpoint by the same "
    "rule (the largest softmax(k S) wins). k: its saliency factor (empty = ke); window: the part of the denoising it joins.",
    "table": "One row per region: box (x y w h, fractions of the image) or mask, its prompts, checkpoint and weight.",
    "bootstrapping": "In this first share of the steps each region is denoised over a plain colour, for tight objects.",
    "window": "The size a model sees at once, in latent pixels; 0 = the model's own (64 SD1, 128 SDXL).",
    "windows": "overlap: MultiDiffusion's overlapping views every step; shifted: fewer, non-overlapping windows that move "
    "every step (SpotDiffusion), about five times less work on a panorama.",
    "stride": "Latent pixels between overlapping views; auto: the largest that still blends every seam.",
    "view_batch_size": "Views per model call: speed and memory only, never the image.",
    "circular": "Views wrap round the left and right edge: a seamless 360° panorama.",
}
"""Hover hint of each control, by field name (or control name for those that are not fields)."""


def _held_entry(entry: dict[str, Any]) -> str:
    parts = " + ".join(entry.get("parts") or ["unet"])
    return f"{html.escape(str(entry['title']))} ({parts}, {(entry.get('bytes') or 0) / 2**30:.2f} GiB)"


def status_line(loaded: dict[str, Any] | None, left_out: list[tuple[str, str]]) -> str:
    """HTML of one line: every fusion checkpoint held in memory (the most recently used first)
    with its parts and size, and how many checkpoints the dropdown leaves out (why, on hover)."""
    if loaded:
        held = loaded.get("held") or [loaded]
        text = "Held in memory: " + ", ".join(map(_held_entry, reversed(held)))
    else:
        text = "No fusion checkpoint held; one loads with the first fused generation."
    if left_out:
        why = "&#10;".join(html.escape(f"{title}: {reason}", quote=True) for title, reason in left_out)
        plural = "s" if len(left_out) > 1 else ""
        text += f' · <span title="{why}">{len(left_out)} checkpoint{plural} of another family not listed</span>'
    return f'<span class="model-fusion-status">{text}</span>'
