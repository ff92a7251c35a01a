"""The argument contract's one table: every field of :class:`~lib_fusion.arguments.args.FusionArgs`
declared once with what the rest of the extension needs to know of it.

A field's type and default stay on the pydantic model (the schema's types come from there);
everything else is here: the methods that read it (each method lists its fields,
:attr:`lib_fusion.methods.base.Method.fields`; a field a method does not read is never
validated for it, :meth:`FusionArgs.for_generation`), its key in the image's infotext, its
X/Y/Z axis, its hover hint, and the bound of a number, which drives the validator, the JSON
schema, the UI's integer conversion and the X/Y/Z axis's type alike, so that they cannot
disagree (``tests/unit/test_field_table.py`` walks every bound's edges through all four).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from lib_fusion.arguments.messages import shown
from lib_fusion.arguments.schedule import K_MAX, K_MIN
from lib_fusion.methods import METHODS

METHOD_NAMES = tuple(METHODS)
"""Every method by name (their objects: :data:`lib_fusion.methods.METHODS`)."""
TWO_MODEL_METHODS = tuple(name for name, method in METHODS.items() if method.two_model)
"""Methods that run model A alone outside the window and both models inside it."""
EVERY_GENERATION = ("enabled", "method", "compare", "preview")
"""The fields every generation reads, whatever its method (Enable and the outputs); every
other field is read by the methods that list it (:attr:`lib_fusion.methods.base.Method.fields`)."""

MAX_VIEW_BATCH = 64
MAX_GUIDANCE = 20.0
MAX_STEPS = 10_000
MAX_WINDOW = 1024
"""Latent pixels of a Regions view (8192 image pixels)."""
MAX_REGION_WEIGHT = 100.0
MIN_FACTOR = 1e-6
"""Smallest region weight (and kg/ke, :data:`lib_fusion.arguments.schedule.K_MIN`): far below any
useful value, and float16 rounds positive numbers not much smaller (under 3e-8) to 0."""


@dataclass(frozen=True)
class Bound:
    """The numbers a field accepts: ``low`` to ``high`` (``high`` itself excluded when
    ``high_open``), whole numbers only when ``integer``, and the single values in ``also``
    outside that range (``window`` 0: the model's own size; ``stride`` ``"auto"``). ``words``
    says it to a user, with ``{low}`` and ``{high}`` filled in from the bound."""

    low: float
    high: float
    words: str
    integer: bool = False
    high_open: bool = False
    also: tuple[Any, ...] = ()

    def text(self) -> str:
        return self.words.format(low=f"{self.low:g}", high=f"{self.high:g}")

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (already of the field's type) is inside the bound."""
        if any(value == extra and type(value) is type(extra) for extra in self.also):
            return True
        if isinstance(value, str):
            return False
        return self.low <= value < self.high if self.high_open else self.low <= value <= self.high

    def check(self, value: Any, as_sent: Any = None) -> Any:
        """``value`` itself, or a ValueError naming it (``as_sent``: as the caller wrote it,
        before its conversion to a number) and the bound."""
        if not self.holds(value):
            raise ValueError(f"{shown(value if as_sent is None else as_sent)}: {self.text()}")
        return value

    def schema(self) -> dict[str, Any]:
        """The bound as JSON schema keywords (beside the type pydantic writes)."""
        number = {"type": "integer" if self.integer else "number", "minimum": self.low}
        number["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        if not self.also:
            return number
        return {"anyOf": [number, {"enum": list(self.also)}]}


@dataclass(frozen=True)
class Widget:
    """A field's control in the accordion: a gradio component by its class name, its label and
    its own keywords (a slider's range and step, a textbox's lines …). A radio's or dropdown's
    choices come from the field's type unless given here or by the accordion (checkpoint
    lists); the hover hint is the row's (:func:`lib_fusion.ui.controls.control` builds it)."""

    kind: Literal["Checkbox", "Radio", "Dropdown", "Textbox", "Slider", "Number"]
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldSpec:
    """What the extension knows of one field besides its type and default."""

    infotext: str | None = None
    """Its key in the image's infotext (None: not written, e.g. the outputs)."""
    axis: str | None = None
    """Its X/Y/Z plot axis label (None: no axis)."""
    hint: str | None = None
    """The hover hint of its control."""
    bound: Bound | None = None
    widget: Widget | None = None
    """Its control in the accordion."""


TABLE: dict[str, FieldSpec] = {
    "enabled": FieldSpec(
        hint="Fuse this generation with a second checkpoint. Off: the WebUI's own generation, bit for bit.",
        widget=Widget("Checkbox", "Enable", {"scale": 0, "min_width": 110}),
    ),
    "model": FieldSpec(
        "Fusion model",
        "[Fusion] Checkpoint",
        "The second checkpoint. Only checkpoints of the active one's family are listed (SD1 with SD1, SDXL with SDXL).",
        widget=Widget("Dropdown", "Fusion checkpoint"),
    ),
    "method": FieldSpec(
        "Fusion",  # doubles as the on switch
        "[Fusion] Method",
        "snb: each pixel from the model that cares most about it (MagicFusion). regions: a prompt and checkpoint per region, "
        "and wide panoramas (MultiDiffusion). guidance: push the active model away from a weaker one. base_uncond: the fusion "
        "checkpoint's negative prediction under the active one's positive.",
        widget=Widget("Radio", "Method"),
    ),
    "prompt": FieldSpec(
        "Fusion prompt",
        "[Fusion] Prompt",
        "What the fusion checkpoint is asked for; empty: the main prompt. Its subject and style show where it wins.",
        widget=Widget("Textbox", "Fusion prompt (empty: the main prompt)", {"lines": 2}),
    ),
    "negative_prompt": FieldSpec(
        "Fusion negative prompt",
        hint="The fusion checkpoint's negative prompt; empty: the main one.",
        widget=Widget("Textbox", "Fusion negative prompt (empty: the main one)", {"lines": 1}),
    ),
    "solo": FieldSpec(
        "Fusion solo",
        "[Fusion] Solo model",
        "Model A: the checkpoint that runs alone outside the fused part of the denoising.",
        widget=Widget("Radio", "Model A (alone outside the fused part)"),
    ),
    "fusion_selection": FieldSpec(
        "Fusion selection",
        hint="The paper's v1,kg,ke: the window edge as a DDPM timestep, then A's and B's saliency factors.",
        widget=Widget("Textbox", "fusion_selection (v1,kg,ke)"),
    ),  # its axes are its three parts (lib_fusion.arguments.xyz)
    "mode": FieldSpec(
        "Fusion mode",
        "[Fusion] Mode",
        "0: A alone throughout; 1: fuse when t <= v1 (the last part); 2: fuse while t > v1 (the first part).",
        Bound(0, 2, "must be {low} (no fusion), 1 (fuse when t <= v1) or {high} (fuse while t > v1)", integer=True),
        widget=Widget("Radio", "Mode (0 off · 1 fuse when t ≤ v1 · 2 fuse while t > v1)"),
    ),
    "saliency_uncond": FieldSpec(
        "Fusion saliency uncond",
        hint="solo: B's response measured against A's negative prediction (the official code); own: against its own.",
        widget=Widget("Radio", "B's saliency against"),
    ),
    "text_encoder": FieldSpec(
        "Fusion text encoder",
        hint="solo: both prompts through model A's text encoder (the paper); own: each checkpoint reads its prompt with its own "
        "text encoder (for fine-tunes that retrained it).",
        widget=Widget("Radio", "Text encoder of the fusion prompts"),
    ),
    "blur": FieldSpec(
        "Fusion blur",
        hint="How the saliency maps are smoothed: the official 4x4 box, a Gaussian, or Face-diffuser's 3x3 Gaussian.",
        widget=Widget("Radio", "Saliency blur"),
    ),
    "mask": FieldSpec(
        "Fusion mask",
        "[Fusion] Mask",
        "hard: each pixel from one model (the paper); soft: a blend by B's share; mean: half of each (no saliency).",
        widget=Widget("Radio", "Mask"),
    ),
    "regions": FieldSpec(
        "Fusion regions",
        hint="The regions as JSON: what the API and the infotext carry; the canvas and table edit it.",
        widget=Widget("Textbox", "regions", {"lines": 2}),
    ),
    "bootstrapping": FieldSpec(
        "Fusion bootstrapping",
        "[Fusion] Bootstrapping",
        "In this first share of the steps each region is denoised over a plain colour, for tight objects.",
        Bound(0, 1, "must be a fraction of the steps from {low} to {high}"),
        widget=Widget("Slider", "Bootstrapping (share of steps)", {"minimum": 0, "maximum": 1, "step": 0.05}),
    ),
    "window": FieldSpec(
        "Fusion window",
        "[Fusion] Window",
        "The size a model sees at once, in latent pixels; 0 = the model's own (64 SD1, 128 SDXL).",
        Bound(8, MAX_WINDOW, "0 (the model's native size) or {low} to {high} latent pixels", integer=True, also=(0,)),
        widget=Widget("Slider", "Window (0 = model's own)", {"minimum": 0, "maximum": 256, "step": 8}),
    ),
    "stride": FieldSpec(
        "Fusion stride",
        "[Fusion] Stride",
        "Latent pixels between overlapping views; auto: the largest that still blends every seam.",
        Bound(1, MAX_WINDOW, "from {low} to the window size (at most {high} latent pixels) or auto", integer=True, also=("auto",)),
        widget=Widget("Dropdown", "Stride (overlap)", {"choices": ["auto", "4", "8", "16", "32"], "allow_custom_value": True}),
    ),
    "view_batch_size": FieldSpec(
        "Fusion view batch",
        "[Fusion] View batch size",
        "Views per model call: speed and memory only, never the image.",
        Bound(1, MAX_VIEW_BATCH, "from {low} to {high}", integer=True),
        widget=Widget("Slider", "View batch size", {"minimum": 1, "maximum": MAX_VIEW_BATCH, "step": 1}),
    ),
    "circular": FieldSpec(
        "Fusion circular",
        hint="Views wrap round the left and right edge: a seamless 360° panorama.",
        widget=Widget("Checkbox", "360° wrap (seamless panorama)"),
    ),
    "compare": FieldSpec(
        hint="Also return each checkpoint alone from the same seed, and a labelled grid of the three.",
        widget=Widget("Checkbox", "Compare: also A alone, B alone and a grid (two more samplings)"),
    ),
    "preview": FieldSpec(
        hint="Also return what decided the fusion: each model's saliency and the mask, or the regions coloured by checkpoint.",
        widget=Widget("Checkbox", "Preview what decided the fusion"),
    ),
    "guidance_weight": FieldSpec(
        "Fusion guidance weight",
        "[Fusion] Guidance weight",
        "1 is plain CFG; above 1 pushes the image away from what the fusion checkpoint would make.",
        Bound(0, MAX_GUIDANCE, "must be from {low} to {high} (1 = plain CFG)"),
        widget=Widget(
            "Slider",
            "Guidance weight w (1 = plain CFG; above 1 pushes A away from B)",
            {"minimum": 0, "maximum": MAX_GUIDANCE, "step": 0.05},
        ),
    ),
    "mask_ema": FieldSpec(
        "Fusion mask EMA",
        "[Fusion] Mask EMA",
        "Smooths the saliency over the steps so fewer pixels flip between models; 0 = a fresh map every step.",
        Bound(0, 1, "a decay from {low} (off) to below {high}", high_open=True),
        widget=Widget("Slider", "Steadier mask (moving average, 0 = off)", {"minimum": 0, "maximum": 0.95, "step": 0.05}),
    ),
    "mask_freeze": FieldSpec(
        "Fusion mask freeze",
        hint="Keep the mask fixed after this many fused steps; 0 = never.",
        bound=Bound(0, MAX_STEPS, "a number of fused steps from {low} (never) to {high}", integer=True),
        widget=Widget("Number", "Freeze the mask after N fused steps", {"precision": 0}),
    ),
    "per_channel": FieldSpec(
        "Fusion per channel",
        hint="A saliency map and mask per latent channel instead of one for all four.",
        widget=Widget("Checkbox", "A mask per latent channel"),
    ),
    "windows": FieldSpec(
        "Fusion windows",
        "[Fusion] Windows",
        "overlap: MultiDiffusion's overlapping views every step; shifted: fewer, non-overlapping windows that move every step "
        "(SpotDiffusion), about five times less work on a panorama.",
        widget=Widget("Radio", "Windows"),
    ),
    "models": FieldSpec(
        "Fusion models",
        hint="SNB over more checkpoints: each entry is fused per pixel with model A and the fusion checkpoint by the same rule "
        "(the largest softmax(k S) wins). k: its saliency factor (empty = ke); window: the part of the denoising it joins.",
        widget=Widget("Textbox", "models", {"lines": 1}),
    ),  # its axes are its entries' checkpoints (lib_fusion.arguments.xyz)
    "background": FieldSpec(
        "Fusion background",
        hint="Which checkpoint denoises the background (the main prompt, wherever no region covers it): the active one, the "
        "fusion checkpoint, or any listed checkpoint by title, name or hash.",
        widget=Widget("Dropdown", "Background checkpoint (the main prompt)", {"allow_custom_value": True}),
    ),
}

OUTPUT_FIELDS = ("compare", "preview")
"""What to return besides the image: not generation parameters, so not in the infotext."""
USED_BY: dict[str, tuple[str, ...]] = {name: tuple(field for field in TABLE if method.reads(field)) for name, method in METHODS.items()}
"""The generation fields each method reads (besides :data:`EVERY_GENERATION`), in the table's order."""
READ_BY: dict[str, tuple[str, ...]] = {field: tuple(name for name in METHOD_NAMES if field in USED_BY[name]) for field in TABLE}
"""Field -> the methods whose generation reads it (empty: every generation's, or none's)."""

_unread = [field for field, methods in READ_BY.items() if not methods and field not in EVERY_GENERATION]
_unknown = [field for method in METHODS.values() for field in method.fields if field not in TABLE]
assert not _unread and not _unknown, f"fields no generation reads: {_unread}; fields a method reads that the table lacks: {_unknown}"
INFOTEXT_KEYS: dict[str, str] = {name: spec.infotext for name, spec in TABLE.items() if spec.infotext}
"""Field -> infotext key. ``Fusion`` (the method) doubles as the on switch."""
BOUNDS: dict[str, Bound] = {name: spec.bound for name, spec in TABLE.items() if spec.bound is not None}
ENTRY_BOUNDS: dict[str, Bound] = {
    "regions.weight": Bound(MIN_FACTOR, MAX_REGION_WEIGHT, "must be from {low} to {high}"),
    "models.k": Bound(K_MIN, K_MAX, "a saliency factor from {low} to {high}", also=(None,)),  # None: ke
}
"""The bounds of a number inside a list field's entries (a region's weight, a further fusion
checkpoint's k), by ``field.entry``: they drive those entries' validators and schema alike."""
INTEGER_FIELDS = tuple(name for name, bound in BOUNDS.items() if bound.integer)
FIELD_HINTS: dict[str, str] = {name: spec.hint for name, spec in TABLE.items() if spec.hint}
