"""The Model Fusion accordion (gradio 3.41 on AUTOMATIC1111 1.10, 4.x on Forge: the same components).

Components are returned in :data:`lib_fusion.arguments.args.FIELDS` order so positional API
arguments and UI values line up. The top row is Enable, method and checkpoint; the
schedule is said in words ("fuse the first 40 % of the denoising", :mod:`lib_fusion.ui.schedule_words`)
and presets fill several fields at once (:mod:`lib_fusion.ui.presets`). Neither is a script
argument: they edit ``fusion_selection`` and ``mode``, which stay the one truth (infotext,
API, X/Y/Z) and sit with the other expert options in the closed Options accordion.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from lib_fusion import host
from lib_fusion.arguments.args import FIELDS, TITLE, FusionArgs
from lib_fusion.arguments.fields import INFOTEXT_KEYS, OUTPUT_FIELDS
from lib_fusion.arguments.infotext import paste_value
from lib_fusion.arguments.schedule import format_fusion_selection, parse_fusion_selection
from lib_fusion.methods import METHODS, Method
from lib_fusion.ui import presets, schedule_words
from lib_fusion.ui.controls import control
from lib_fusion.ui.ui_models import models_controls
from lib_fusion.ui.ui_regions import background_choices, region_controls
from lib_fusion.ui.ui_text import HINTS, status_line

PRESET_FIELDS = ("method", "model", "fusion_selection", "mode", "solo")


@dataclass
class Controls:
    components: list[Any]
    infotext_fields: list[tuple[Any, Any]]
    paste_field_names: list[str]


def build(is_img2img: bool, elem_id: Any, sampling: dict[str, Any] | None = None) -> Controls:
    """The accordion; ``sampling`` holds the tab's sampler, scheduler and steps components
    (when the WebUI showed them to the script), which the schedule's label follows."""
    defaults = host.ui_defaults()
    tab = "img2img" if is_img2img else "txt2img"
    offered, left_out = host.fusable_titles()
    with gr.Accordion(TITLE, open=False, elem_id=f"model_fusion_{tab}"):
        with gr.Row(elem_classes=["model-fusion-top"]):
            enabled = control("enabled", defaults.enabled, elem_id)
            method = control("method", defaults.method, elem_id)
        with gr.Row(elem_classes=["model-fusion-checkpoint"]):
            # "" rather than None when none is chosen: the WebUI's paste (UI and the API's
            # ``infotext``) converts a pasted value to the type of the component's value, and a
            # None there drops the pasted checkpoint.
            first_other = next((title for title in offered if title != host.active_title()), "")
            model = control("model", defaults.model or first_other, elem_id, choices=offered)
            refresh = gr.Button(value="\U0001f504", elem_classes=["tool"], elem_id=elem_id("refresh"), tooltip=HINTS["refresh"])
            unload = gr.Button(value="\u23cf", elem_classes=["tool"], elem_id=elem_id("unload"), tooltip=HINTS["unload"])
        status = gr.HTML(_status(left_out), elem_id=elem_id("status"))
        # Clicked by javascript/model_fusion.js when a generation ends (and hidden by style.css):
        # the status and the checkpoint lists then say what is held and listed now.
        sync = gr.Button(value="sync", elem_id=elem_id("sync"), elem_classes=["model-fusion-hidden"])
        controls = {"enabled": enabled, "model": model, "method": method}
        shown = _groups_shown(METHODS[defaults.method])
        with gr.Group(visible=shown[0]) as two_model_group:
            two_model, guidance_row, friendly = _two_model_controls(defaults, elem_id, sampling or {}, model.value)
        with gr.Group(visible=shown[1]) as regions_group:
            controls.update(region_controls(defaults, elem_id, offered))
        with gr.Row():
            compare = control("compare", defaults.compare, elem_id)
            preview = control("preview", defaults.preview, elem_id)
        with gr.Accordion("Options (the paper's numbers and expert settings)", open=False, elem_id=elem_id("options")):
            expert, snb_options = _expert_controls(defaults, elem_id)
        controls.update(two_model, **expert, compare=compare, preview=preview)

    _wire_schedule(controls, friendly, sampling or {})
    _wire_presets(controls, friendly["preset"], friendly["preset_note"])
    lists = [model, controls["background"], status]
    refresh.click(fn=lambda *held: _checkpoint_choices(True, *held), inputs=lists[:2], outputs=lists)
    sync.click(fn=lambda *held: _checkpoint_choices(False, *held), inputs=lists[:2], outputs=lists)
    model.focus(fn=lambda *held: _checkpoint_choices(False, *held)[:2], inputs=lists[:2], outputs=lists[:2])
    unload.click(fn=_unload, inputs=[], outputs=[status])
    for component in (enabled, model, method):  # the status follows what the last generation loaded
        component.change(fn=lambda: _status(), inputs=[], outputs=[status])
    method.change(
        fn=lambda chosen: tuple(gr.update(visible=visible) for visible in _groups_shown(METHODS[chosen])),
        inputs=[method],
        outputs=[two_model_group, regions_group, guidance_row, snb_options],
    )
    components = [controls[field] for field in FIELDS]
    # Compare and preview are output options: pasting an infotext leaves them as they are.
    infotext_fields = [(component, _paster(field)) for component, field in zip(components, FIELDS) if field not in OUTPUT_FIELDS]
    return Controls(components, infotext_fields, [INFOTEXT_KEYS[field] for field in FIELDS if field in INFOTEXT_KEYS])


def _groups_shown(method: Method) -> tuple[bool, bool, bool, bool]:
    """Which groups of controls a method shows: the two-model controls, the regions, guidance's
    weight, SNB's mask options (each where the method reads those fields)."""
    return method.two_model, method.lays_out_regions, method.reads("guidance_weight"), method.reads("mask")


def _two_model_controls(
    defaults: FusionArgs, elem_id: Any, sampling: dict[str, Any], model: str
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """The preset, the fusion checkpoint's prompts, the schedule in words with kg and ke, and
    guidance's weight (SNB, guidance, base uncond). Returns the fields, the guidance row (its
    visibility follows the method) and the controls that are not fields. ``model``: the
    fusion checkpoint shown, which the schedule's line names as A or B."""
    v1, kg, ke = defaults.selection
    choice, share = schedule_words.words_of(v1, defaults.mode)
    preset_name = presets.matching(defaults.dict(), host.active_title())
    with gr.Row():
        preset = gr.Dropdown(
            label="Preset", choices=list(presets.NAMES), value=preset_name, elem_id=elem_id("preset"), tooltip=HINTS["preset"]
        )
        preset_note = gr.Markdown(presets.description(preset_name), elem_classes=["model-fusion-help"], elem_id=elem_id("preset_note"))
    prompt = control("prompt", defaults.prompt, elem_id)
    negative_prompt = control("negative_prompt", defaults.negative_prompt, elem_id)
    with gr.Row(elem_classes=["model-fusion-schedule"]):
        fuse = gr.Radio(
            label="Fuse", choices=list(schedule_words.CHOICES), value=choice, scale=3, elem_id=elem_id("fuse"), tooltip=HINTS["fuse"]
        )
        share_slider = gr.Slider(
            label="% of the denoising", minimum=0, maximum=100, step=0.5, value=share, scale=2, elem_id=elem_id("share"),
            tooltip=HINTS["share"],
        )  # fmt: skip
        # No minimum/maximum on gradio 3.41's numbers: its preprocess raises for a value out of
        # range, which fails every generation (Enable off too) before the script sees it; the
        # argument model refuses bad values for an enabled fusion only.
        kg_number = gr.Number(label="kg (A)", value=kg, step=0.1, scale=1, min_width=70, elem_id=elem_id("kg"), tooltip=HINTS["kg"])
        ke_number = gr.Number(label="ke (B)", value=ke, step=0.1, scale=1, min_width=70, elem_id=elem_id("ke"), tooltip=HINTS["ke"])
    tab = [getattr(sampling.get(key), "value", None) for key in TAB_KEYS if key in sampling]
    first_label = _schedule_label((defaults.fusion_selection, defaults.mode, defaults.solo, model, *tab), len(tab))
    schedule_note = gr.Markdown(first_label, elem_classes=["model-fusion-help"], elem_id=elem_id("schedule_note"))
    with gr.Row(visible=METHODS[defaults.method].reads("guidance_weight")) as guidance_row:
        guidance_weight = control("guidance_weight", defaults.guidance_weight, elem_id)
    fields = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_weight": guidance_weight}
    friendly = {
        "preset": preset, "preset_note": preset_note, "fuse": fuse, "share": share_slider, "kg": kg_number, "ke": ke_number,
        "schedule_note": schedule_note,
    }  # fmt: skip
    return fields, guidance_row, friendly


def _expert_controls(defaults: FusionArgs, elem_id: Any) -> tuple[dict[str, Any], Any]:
    """The closed Options: text encoder, model A, the paper's numbers, SNB's mask options."""

    def shown(field: str) -> Any:
        return control(field, getattr(defaults, field), elem_id)

    with gr.Row():
        text_encoder, solo = shown("text_encoder"), shown("solo")
    with gr.Row():
        fusion_selection, mode = shown("fusion_selection"), shown("mode")
    with gr.Group(visible=METHODS[defaults.method].reads("mask")) as snb_options:
        with gr.Row():
            saliency_uncond, blur, mask = shown("saliency_uncond"), shown("blur"), shown("mask")
        with gr.Row():
            mask_ema, mask_freeze, per_channel = shown("mask_ema"), shown("mask_freeze"), shown("per_channel")
        models = models_controls(defaults, elem_id)
    fields = {
        "text_encoder": text_encoder, "solo": solo, "fusion_selection": fusion_selection, "mode": mode,
        "saliency_uncond": saliency_uncond, "blur": blur, "mask": mask, "mask_ema": mask_ema, "mask_freeze": mask_freeze,
        "per_channel": per_channel, "models": models,
    }  # fmt: skip
    return fields, snb_options


def _wire_schedule(controls: dict[str, Any], friendly: dict[str, Any], sampling: dict[str, Any]) -> None:
    """Words and numbers follow each other; the label follows both and the tab's sampler."""
    fusion_selection, mode = controls["fusion_selection"], controls["mode"]
    words = [friendly["fuse"], friendly["share"], friendly["kg"], friendly["ke"]]
    for component in words:
        component.change(fn=_numbers_from_words, inputs=[*words, fusion_selection, mode], outputs=[fusion_selection, mode])
    for component in (fusion_selection, mode):
        component.change(fn=_words_from_numbers, inputs=[fusion_selection, mode, *words], outputs=words)
    tab_inputs = [sampling[key] for key in TAB_KEYS if key in sampling]
    label_inputs = [fusion_selection, mode, controls["solo"], controls["model"], *tab_inputs]
    for component in label_inputs:
        component.change(
            fn=lambda *values: _schedule_label(values, len(tab_inputs)), inputs=label_inputs, outputs=[friendly["schedule_note"]]
        )


def _wire_presets(controls: dict[str, Any], preset: Any, note: Any) -> None:
    """A preset fills its fields; editing any of them shows the preset they now match."""
    fields = [controls[field] for field in PRESET_FIELDS]
    preset.change(fn=_fill_preset, inputs=[preset, *fields], outputs=[*fields, note])
    for component in fields:
        component.change(fn=_preset_of, inputs=[preset, *fields], outputs=[preset, note])


def _fill_preset(name: str, *current: Any) -> tuple[Any, ...]:
    values = presets.values_of(name, host.active_title())
    updates = [
        gr.update(value=str(values[field]) if field == "mode" else values[field]) if field in values and values[field] != held
        else gr.update()
        for field, held in zip(PRESET_FIELDS, current)
    ]  # fmt: skip
    return (*updates, presets.description(name))


def _preset_of(shown: str, *current: Any) -> tuple[Any, Any]:
    name = presets.matching(dict(zip(PRESET_FIELDS, current)), host.active_title())
    if name == shown:
        return gr.update(), gr.update()
    return gr.update(value=name), presets.description(name)


def _numbers_from_words(choice: str, share: float, kg: float, ke: float, selection: str, mode: str) -> tuple[Any, Any]:
    """Words or factors changed: write v1,kg,ke and the mode, unless they already say that.
    A factor out of range is written as it is, so the generation names it."""
    try:
        v1_now, _, _ = parse_fusion_selection(selection)
        mode_now = int(mode)
        if schedule_words.shows(choice, float(share), v1_now, mode_now):
            v1, new_mode = v1_now, mode_now
        else:
            v1, new_mode = schedule_words.numbers_of(choice, float(share), v1_now)
        text = format_fusion_selection(v1, float(kg), float(ke))
    except (TypeError, ValueError):  # the numbers do not parse (Options shows why) or a box is empty
        return gr.update(), gr.update()
    try:
        if parse_fusion_selection(text) == parse_fusion_selection(selection):
            text = selection
    except ValueError:
        pass
    return (gr.update() if text == selection else text), (gr.update() if new_mode == mode_now else str(new_mode))


def _words_from_numbers(selection: str, mode: str, choice: str, share: float, kg: float, ke: float) -> tuple[Any, ...]:
    """The numbers changed (Options, a paste, a preset): say them in words, unless the words
    already do; ``none`` leaves the share where it was."""
    try:
        v1, kg_new, ke_new = parse_fusion_selection(selection)
        mode_number = int(mode)
        shown = schedule_words.shows(choice, float(share), v1, mode_number)
    except (TypeError, ValueError):
        return gr.update(), gr.update(), gr.update(), gr.update()
    new_choice, new_share = schedule_words.words_of(v1, mode_number)
    if shown:
        updates = (gr.update(), gr.update())
    elif new_choice == schedule_words.NONE:
        updates = (gr.update(value=new_choice), gr.update())
    else:
        updates = (gr.update(value=new_choice), gr.update(value=new_share))
    return (*updates, _changed(kg, kg_new), _changed(ke, ke_new))


def _changed(held: Any, new: float) -> Any:
    try:
        return gr.update() if float(held) == new else gr.update(value=new)
    except (TypeError, ValueError):
        return gr.update(value=new)


TAB_KEYS = ("sampler", "scheduler", "steps", "strength")
"""The tab's components the schedule label reads (``strength``: img2img's denoising strength)."""


def _schedule_label(values: tuple[Any, ...], tab_inputs: int) -> str:
    """Which checkpoints are A and B, then the schedule in words and the steps it fuses."""
    selection, mode, solo, model, *tab = values
    roles = schedule_words.roles(solo, host.active_title(), model or "")
    try:
        v1, _, _ = parse_fusion_selection(selection)
        mode_number = int(mode)
    except (TypeError, ValueError):
        return f"{roles} The schedule in Options does not parse; see fusion_selection."
    timesteps, sampler, strength = None, "", None
    if tab_inputs >= 3:
        sampler, scheduler, steps, *strength_given = tab
        strength = _number(strength_given[0]) if strength_given else None
        timesteps = host.step_timesteps(sampler, scheduler, steps, strength)
    return f"{roles} {schedule_words.describe(v1, mode_number, timesteps, sampler or '', strength)}"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _checkpoint_choices(rescan: bool, model: str, background: str) -> tuple[Any, Any, str]:
    """The fusion and background dropdowns' choices as the WebUI lists checkpoints now (after
    a rescan of the folder when ``rescan``: the refresh button), and the status line. A list
    that did not change is left alone (an open dropdown stays open)."""
    if rescan:
        host.refresh_checkpoints()
    offered, left_out = host.fusable_titles()
    model_update = gr.update(choices=offered, value=model)
    background_update = gr.update(choices=background_choices(offered), value=background)
    return model_update, background_update, _status(left_out)


def _status(left_out: list[tuple[str, str]] | None = None) -> str:
    """The status line; on a WebUI that cannot fuse, why."""
    problem = host.unsupported_host()
    if problem is not None:
        return f'<span class="model-fusion-status">{html.escape(problem)}</span>'
    return status_line(host.loaded_report(), host.fusable_titles()[1] if left_out is None else left_out)


def _unload() -> str:
    """The unload button: free the cached fusion checkpoint (it loads again on the next fusion)."""
    host.unload()
    return _status()


def _paster(field: str):
    return lambda params: paste_value(params, field)
