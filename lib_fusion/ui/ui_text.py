"""The accordion's words that are not labels: hover hints (the WebUI shows a component's
``tooltip`` as its title) and the one-line status of the fusion checkpoint. No gradio here,
so the tests read them."""

from __future__ import annotations

import html
from typing import Any

from lib_fusion.arguments.fields import FIELD_HINTS

CONTROL_HINTS: dict[str, str] = {
    "preset": "Fills several controls at once; changing any of them shows custom.",
    "refresh": "Read the checkpoint folder again.",
    "unload": "Free the memory of the fusion checkpoint; it loads again with the next fused generation.",
    "fuse": "Which part of the denoising blends both checkpoints: the first steps set the composition, the last the details. "
    "Outside it model A runs alone.",
    "share": "How much of the denoising, from noise (t = 1000) down to the image (t = 0).",
    "kg": "Model A's saliency factor: higher sharpens A's map, so A keeps fewer but surer pixels.",
    "ke": "Model B's saliency factor: higher sharpens B's map, so B keeps fewer but surer pixels.",
    "table": "One row per region: box (x y w h, fractions of the image) or mask, its prompts, checkpoint and weight.",
}
"""Hover hints of the controls that are not fields (each field's is in its table row)."""
HINTS: dict[str, str] = {**FIELD_HINTS, **CONTROL_HINTS}
"""Hover hint of each control, by field name or control name."""


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
