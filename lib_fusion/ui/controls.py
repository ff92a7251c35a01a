"""A field's control, built from its row of the field table (:class:`lib_fusion.arguments.fields.Widget`):
the component, its label and keywords, its choices (from the field's type, or given), its hover
hint. The accordion says only where a control goes and what it shows first."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from lib_fusion.arguments.args import choices_of
from lib_fusion.arguments.fields import TABLE
from lib_fusion.ui.ui_text import HINTS


def control(name: str, value: Any, elem_id: Callable[[str], str], **layout: Any) -> Any:
    """The control of field ``name`` showing ``value``; ``layout``: the accordion's keywords
    (``scale``, ``min_width``, or the choices of a checkpoint list)."""
    widget = TABLE[name].widget
    if widget is None:
        raise ValueError(f"the field {name!r} has no control of its own in the field table")
    options = {**widget.options, **layout}
    if widget.kind in ("Radio", "Dropdown") and "choices" not in options:
        options["choices"], value = choices_of(name), str(value)  # the type's choices, as the strings a radio shows
    component = getattr(gr, widget.kind)
    return component(label=widget.label, value=value, elem_id=elem_id(name), tooltip=HINTS[name], **options)
