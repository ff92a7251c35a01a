"""The Model Fusion accordion (gradio 3.41, as pinned by the WebUI).

Components are returned in :data:`lib_fusion.args.FIELDS` order so positional API
arguments and UI values line up. The friendly window controls (v1 slider, kg, ke) are not
script arguments: they edit the ``fusion_selection`` text, which stays the one truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from lib_fusion import host
from lib_fusion.args import FIELDS, TITLE, FusionArgs
from lib_fusion.infotext import KEYS, paste_value
from lib_fusion.schedule import K_MAX, T_MAX, format_fusion_selection, parse_fusion_selection

MODE_HELP = "0: A alone · 1: fuse when t ≤ v1 · 2: fuse while t > v1"


@dataclass
class Controls:
    components: list[Any]
    infotext_fields: list[tuple[Any, Any]]
    paste_field_names: list[str]


def build(is_img2img: bool, elem_id: Any) -> Controls:
    defaults = FusionArgs()
    tab = "img2img" if is_img2img else "txt2img"
    v1, kg, ke = defaults.selection
    with gr.Accordion(TITLE, open=False, elem_id=f"model_fusion_{tab}"):
        enabled = gr.Checkbox(label="Enable", value=defaults.enabled, elem_id=elem_id("enabled"))
        with gr.Row():
            model = gr.Dropdown(label="Fusion checkpoint", choices=host.checkpoint_titles(), value=None, elem_id=elem_id("model"))
            refresh = gr.Button(value="\U0001f504", elem_classes=["tool"], elem_id=elem_id("refresh"))
            method = gr.Radio(label="Method", choices=["snb"], value=defaults.method, elem_id=elem_id("method"))
        prompt = gr.Textbox(label="Fusion prompt (empty: the main prompt)", lines=2, elem_id=elem_id("prompt"))
        negative_prompt = gr.Textbox(label="Fusion negative prompt (empty: the main one)", lines=1, elem_id=elem_id("negative_prompt"))
        with gr.Row():
            solo = gr.Radio(
                label="Runs alone outside the window (model A)", choices=["active", "fusion"], value=defaults.solo, elem_id=elem_id("solo")
            )
            mode = gr.Radio(label=f"Mode ({MODE_HELP})", choices=["0", "1", "2"], value=str(defaults.mode), elem_id=elem_id("mode"))
        with gr.Row():
            fusion_selection = gr.Textbox(
                label="fusion_selection (v1,kg,ke)", value=defaults.fusion_selection, elem_id=elem_id("fusion_selection")
            )
            v1_slider = gr.Slider(
                label="v1: window edge (DDPM timestep)", minimum=0, maximum=T_MAX, step=1, value=v1, elem_id=elem_id("v1")
            )
            kg_number = gr.Number(label="kg (A's saliency factor)", value=kg, minimum=0, maximum=K_MAX, elem_id=elem_id("kg"))
            ke_number = gr.Number(label="ke (B's saliency factor)", value=ke, minimum=0, maximum=K_MAX, elem_id=elem_id("ke"))
        with gr.Accordion("Options (defaults reproduce the official code)", open=False), gr.Row():
            saliency_uncond = gr.Radio(
                label="B's saliency against", choices=["solo", "own"], value=defaults.saliency_uncond, elem_id=elem_id("saliency_uncond")
            )
            text_encoder = gr.Radio(
                label="Text encoder", choices=["solo", "own"], value=defaults.text_encoder, elem_id=elem_id("text_encoder")
            )
            blur = gr.Radio(label="Saliency blur", choices=["box", "gaussian"], value=defaults.blur, elem_id=elem_id("blur"))
            mask = gr.Radio(label="Mask", choices=["hard", "soft"], value=defaults.mask, elem_id=elem_id("mask"))

    refresh.click(fn=lambda: gr.update(choices=host.refresh_checkpoints()), inputs=[], outputs=[model])
    friendly = [v1_slider, kg_number, ke_number]
    for control in friendly:
        control.change(fn=_selection_from_friendly, inputs=[*friendly, fusion_selection], outputs=[fusion_selection])
    fusion_selection.change(fn=_friendly_from_selection, inputs=[fusion_selection, *friendly], outputs=friendly)

    components = [enabled, model, method, prompt, negative_prompt, solo, fusion_selection, mode, saliency_uncond, text_encoder, blur, mask]
    assert len(components) == len(FIELDS)
    infotext_fields = [(component, _paster(field)) for component, field in zip(components, FIELDS)]
    return Controls(components, infotext_fields, [KEYS[field] for field in FIELDS if field in KEYS])


def _paster(field: str):
    return lambda params: paste_value(params, field)


def _selection_from_friendly(v1: float, kg: float, ke: float, current: str) -> Any:
    """Slider or number moved: rewrite the text unless it already says the same."""
    try:
        text = format_fusion_selection(float(v1), float(kg), float(ke))
        parse_fusion_selection(text)  # an out-of-range number leaves the text as it is
    except (TypeError, ValueError):
        return gr.update()
    return gr.update() if text == current else text


def _friendly_from_selection(text: str, v1: float, kg: float, ke: float) -> Any:
    """Text edited: move the slider and numbers when the text is valid and says something new."""
    try:
        values = parse_fusion_selection(text)
    except ValueError:
        return gr.update(), gr.update(), gr.update()
    if values == (float(v1), float(kg), float(ke)):
        return gr.update(), gr.update(), gr.update()
    return tuple(gr.update(value=value) for value in values)
