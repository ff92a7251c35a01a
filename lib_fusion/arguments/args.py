"""The one argument model of the extension: UI values, API dicts and infotext all pass here.

Built on pydantic's v1 API, which both hosts provide: A1111 1.10 pins pydantic 1.10
(through fastapi 0.94) and newer hosts ship pydantic 2 with ``pydantic.v1`` beside it.
"""

from __future__ import annotations

import json
import math
import typing
from typing import Any, List, Literal, Sequence

try:
    from pydantic.v1 import (
        BaseModel,
        Extra,
        Field,
        PrivateAttr,
        StrictBool,
        StrictInt,
        StrictStr,
        ValidationError,
        root_validator,
        validator,
    )
except ImportError:  # pydantic 1.x before 1.10.17 has no v1 namespace
    from pydantic import BaseModel, Extra, Field, PrivateAttr, StrictBool, StrictInt, StrictStr, ValidationError, root_validator, validator

from lib_fusion.arguments.fields import BOUNDS, INTEGER_FIELDS, METHOD_NAMES, OUTPUT_FIELDS, USED_BY
from lib_fusion.arguments.input_limits import json_list, screen
from lib_fusion.arguments.messages import cut, describe, shown
from lib_fusion.arguments.model_args import MAX_FUSION_MODELS, FusionModelArgs
from lib_fusion.arguments.region_args import MAX_MODEL_NAME, RegionArgs, checkpoint_name, number
from lib_fusion.arguments.schedule import format_fusion_selection, parse_fusion_selection
from lib_fusion.methods import METHODS, method_of

TITLE = "Model Fusion"
MAX_REGIONS = 16
"""Each region adds a model pass per view and step; more than this is refused up front."""


class FusionArgumentError(ValueError):
    """A bad argument; the message names it and says what would be valid."""


class FusionArgs(BaseModel):
    """Every parameter of one fusion, with the official code's behaviour as defaults."""

    enabled: StrictBool = Field(False, description="Fuse this generation.")
    model: StrictStr = Field("", description="Fusion checkpoint: a title, name or hash the WebUI's checkpoint lookup resolves.")
    method: Literal[METHOD_NAMES] = Field(  # type: ignore[valid-type] (a tuple of strings: Literal[...] of each)
        "snb",
        description="snb: saliency-aware noise blending (MagicFusion); regions: Region MultiDiffusion; guidance: guide A "
        "away from B (autoguidance); base_uncond: B's unconditional prediction under A's conditional one.",
    )
    prompt: StrictStr = Field("", description="The fusion checkpoint's prompt; empty = the main prompt.")
    negative_prompt: StrictStr = Field("", description="The fusion checkpoint's negative prompt; empty = the main negative prompt.")
    solo: Literal["active", "fusion"] = Field("active", description="Role A: the model that runs alone outside the fusion window.")
    fusion_selection: StrictStr = Field(
        "600,1,1",
        description="The paper's ``v1,kg,ke``: window edge (DDPM timestep), A's and B's saliency factors.",
        pattern=r"^[^,]+,[^,]+,[^,]+$",
    )
    mode: StrictInt = Field(2, description="0: A alone throughout; 1: fuse when t <= v1; 2: fuse while t > v1.", **BOUNDS["mode"].schema())
    saliency_uncond: Literal["solo", "own"] = Field("solo", description="B's guidance response against A's uncond (official) or its own.")
    text_encoder: Literal["solo", "own"] = Field(
        "solo", description="Both prompts through A's text encoder (official) or each model through its own."
    )
    blur: Literal["box", "gaussian", "gaussian3"] = Field(
        "box", description="Saliency blur: the official 4x4 box, a centred Gaussian (sigma 1), or Face-diffuser's 3x3 Gaussian."
    )
    mask: Literal["hard", "soft", "mean"] = Field(
        "hard",
        description="Per-pixel choice of one model (official), a blend by B's saliency share, or the mean of the two "
        "predictions (the composite baseline, no saliency).",
    )
    regions: List[RegionArgs] = Field(
        [], description="Regions method: foreground regions over the background (the main prompt, active model).", maxItems=MAX_REGIONS
    )
    bootstrapping: Any = Field(
        0.4,
        description="Regions method: fraction of the steps whose foreground passes are bootstrapped (official 20/50).",
        **BOUNDS["bootstrapping"].schema(),
    )
    window: StrictInt = Field(
        0,
        description="Regions method: view size in latent pixels; 0 = the model's native size (64 SD1/SD2, 128 SDXL).",
        **BOUNDS["window"].schema(),
    )
    stride: Any = Field(
        8,
        **BOUNDS["stride"].schema(),
        description="Regions method, overlapping windows: latent pixels between neighbouring views of a large canvas (1 to the "
        "window); auto: the largest that keeps every seam inside a second view (the infotext says which).",
    )
    view_batch_size: StrictInt = Field(
        4,
        description="Regions method: (view, region) passes per UNet call; changes speed and memory, never the image.",
        **BOUNDS["view_batch_size"].schema(),
    )
    circular: StrictBool = Field(
        False, description="Regions method: wrap views round the left/right edge (seam-free 360-degree panoramas)."
    )
    compare: StrictBool = Field(
        False,
        description="Also return, from the same seeds, model A alone and model B alone (Regions: every region on the "
        "active, then on the fusion checkpoint) and a labelled grid of the three; costs those two extra samplings.",
    )
    preview: StrictBool = Field(
        False,
        description="Also return pictures of what decided the fusion: per image, each model's saliency heat map and "
        "the mask at a few fused steps (SNB), or the regions coloured by model (Regions), over the result.",
    )
    guidance_weight: Any = Field(
        1.5,
        description="Guidance method: w in D_A(u) + s (D_A(c) - D_A(u)) + (w - 1) (D_A(c) - D_B(c)); 1 = plain CFG.",
        **BOUNDS["guidance_weight"].schema(),
    )
    mask_ema: Any = Field(
        0.0,
        description="SNB: decay of a moving average of the saliency maps over the steps (0 = off, the official per-step mask).",
        **BOUNDS["mask_ema"].schema(),
    )
    mask_freeze: StrictInt = Field(
        0, description="SNB: keep the mask fixed after this many fused steps (0 = never).", **BOUNDS["mask_freeze"].schema()
    )
    per_channel: StrictBool = Field(
        False, description="SNB: saliency, softmax and mask per latent channel (Face-diffuser) instead of their channel mean."
    )

    windows: Literal["overlap", "shifted"] = Field(
        "overlap",
        description="Regions method: overlap = MultiDiffusion's overlapping views every step; shifted = non-overlapping "
        "windows whose grid moves by a seeded random offset each step (SpotDiffusion): about canvas / window views per step.",
    )
    models: List[FusionModelArgs] = Field(
        [],
        description="SNB: further fusion checkpoints, each {model, prompt, negative_prompt, k, window}, fused per pixel with "
        "model A and the fusion checkpoint (model, prompt, negative_prompt and ke are the first; with model empty, the "
        "list's first entry is).",
        maxItems=MAX_FUSION_MODELS,
    )

    background: StrictStr = Field(
        "active",
        description="Regions method: the checkpoint that denoises the background (the main prompt): 'active', 'fusion' or any "
        "checkpoint the WebUI lists (a title, name or hash).",
        maxLength=MAX_MODEL_NAME,
    )

    _first_from_models: bool = PrivateAttr(False)
    """``model`` was empty and ``models[0]`` moved there (:meth:`_first_of_the_models`)."""

    class Config:
        extra = Extra.forbid
        allow_mutation = False

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._first_from_models = bool(self.model) and not str(data.get("model") or "").strip()

    def fusion_checkpoint_place(self, index: int | None = None) -> str:
        """Where the user wrote fusion checkpoint ``index`` of :attr:`models` (None: the first,
        :attr:`model`): its position as written, before the list's first entry moved to ``model``."""
        if index is None:
            return "models[0]" if self._first_from_models else "model"
        return f"models[{index + self._first_from_models}]"

    @validator("background")
    def _valid_background(cls, value: str) -> str:
        return checkpoint_name(value, "choose 'active', 'fusion' or a checkpoint's title, name or hash")

    @validator("models", pre=True)
    def _models_json(cls, value: Any) -> Any:
        return json_list(value, MAX_FUSION_MODELS, "checkpoints", "each adds two model passes per fused step")

    @validator("bootstrapping", "guidance_weight", "mask_ema", pre=True, always=True)
    def _bounded_number(cls, value: Any, field: Any) -> float:
        return BOUNDS[field.name].check(number(value), value)

    @validator("mode", "window", "view_batch_size", "mask_freeze")
    def _bounded_integer(cls, value: int, field: Any) -> int:
        return BOUNDS[field.name].check(value)

    @validator("fusion_selection")
    def _valid_selection(cls, value: str) -> str:
        return format_fusion_selection(*parse_fusion_selection(value))

    @validator("model")
    def _strip_model(cls, value: str) -> str:
        return value.strip()

    @validator("regions", pre=True)
    def _regions_json(cls, value: Any) -> Any:
        return json_list(value, MAX_REGIONS, "regions", "each adds a model pass per view and step")

    @validator("stride", pre=True, always=True)
    def _valid_stride(cls, value: Any, values: dict) -> int | str:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{shown(value)}: a whole number of latent pixels or auto")
        bound = BOUNDS["stride"]
        window = values.get("window") or bound.high
        if not bound.low <= value <= window:
            raise ValueError(f"{shown(value)}: from {bound.low:g} to the window size ({window:g} latent pixels)")
        return value

    @root_validator(skip_on_failure=True)
    def _first_of_the_models(cls, values: dict) -> dict:
        """``model``, ``prompt``, ``negative_prompt`` and ke are the first fusion checkpoint;
        with ``model`` empty the list's first entry moves there (one form for both)."""
        models = values.get("models") or []
        if models and not values.get("model"):
            first, rest = models[0], models[1:]
            v1, kg, ke = parse_fusion_selection(values["fusion_selection"])
            values.update(
                model=first.model,
                prompt=first.prompt,
                negative_prompt=first.negative_prompt,
                fusion_selection=format_fusion_selection(v1, kg, ke if first.k is None else first.k),
                models=rest,
            )
            if first.window is not None:
                raise ValueError("models[0].window: the first fusion checkpoint joins every fused step (fusion_selection says which)")
        if values.get("models") and values.get("enabled"):
            _check_several(values)
        return values

    @root_validator(skip_on_failure=True)
    def _model_when_needed(cls, values: dict) -> dict:
        if values.get("enabled") and not values.get("model") and METHODS[values["method"]].needs_fusion_checkpoint(values):
            why = " (compare runs every region on it)" if METHODS[values["method"]].lays_out_regions and values.get("compare") else ""
            raise ValueError(f"model: choose a fusion checkpoint{why} (a title, name or hash from the WebUI's checkpoint list)")
        return values

    @property
    def needs_fusion_checkpoint(self) -> bool:
        return method_of(self).needs_fusion_checkpoint(self.__dict__)

    @property
    def selection(self) -> tuple[float, float, float]:
        """(v1, kg, ke)."""
        return parse_fusion_selection(self.fusion_selection)

    @classmethod
    def parse(cls, data: Any) -> FusionArgs:
        """Validate a dict (API) or an instance; raise :class:`FusionArgumentError` naming each bad field."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise FusionArgumentError(f"{TITLE}: arguments must be an object with named fields, got {type(data).__name__}")
        try:
            for name, value in data.items():
                screen(value, str(name))
            return cls(**data)
        except ValidationError as error:
            problems = describe(error.errors(), data, FIELDS, {"regions": REGION_FIELDS, "models": MODEL_FIELDS})
            plural = "s" if len(problems) > 1 else ""
            raise FusionArgumentError(f"{TITLE}: invalid argument{plural}: {cut('; '.join(problems), 1000)}") from None
        except FusionArgumentError:
            raise
        except Exception as error:  # whatever else a strange value provokes: still our message, briefly
            raise FusionArgumentError(f"{TITLE}: invalid argument: {cut(str(error))}") from None

    @classmethod
    def from_script_args(cls, args: Sequence[Any]) -> FusionArgs:
        """The script's ``*args`` validated in full: one dict (API), or the UI's values in :data:`FIELDS` order."""
        return cls.parse(script_data(args))

    @classmethod
    def for_generation(cls, data: dict[str, Any]) -> FusionArgs:
        """What a generation runs with. Enable off: the defaults, nothing else read, so a
        half-typed field can never block a plain generation. Enable on: the fields the
        chosen method reads (:data:`USED_BY`), validated; the others are left out unread
        (a Regions field the user cannot see never fails an SNB generation)."""
        if data.get("enabled", False) is False:
            return cls()
        method = data.get("method", "snb")
        used = {"enabled", "method", *OUTPUT_FIELDS, *USED_BY.get(method, FIELDS)} if isinstance(method, str) else set(FIELDS)
        return cls.parse({name: value for name, value in data.items() if name in used or name not in FIELDS})

    def to_ui(self) -> list[Any]:
        """Positional values in :data:`FIELDS` order (what ``ui()`` returns)."""
        return [_to_ui(name, getattr(self, name)) for name in FIELDS]


def as_fusion_error(error: BaseException) -> FusionArgumentError:
    """Any failure while reading the arguments, in the extension's words and briefly."""
    if isinstance(error, FusionArgumentError):
        return error
    return FusionArgumentError(f"{TITLE}: invalid argument: {cut(f'{type(error).__name__}: {error}')}")


def script_data(args: Sequence[Any]) -> dict[str, Any]:
    """The script's ``*args`` as one dict of named fields: the API's argument object, or the
    UI's values in :data:`FIELDS` order (gradio's types converted). Not validated."""
    if not args:
        return {}
    if isinstance(args[0], (dict, FusionArgs)):
        extra = sum(isinstance(arg, (dict, FusionArgs)) for arg in args[1:])
        if extra:
            raise FusionArgumentError(f"{TITLE}: got {extra + 1} argument objects; send one object with every field in it")
        return args[0].dict() if isinstance(args[0], FusionArgs) else dict(args[0])
    if len(args) > len(FIELDS):
        raise FusionArgumentError(f"{TITLE}: got {len(args)} positional arguments, at most {len(FIELDS)} ({', '.join(FIELDS)})")
    return {name: _from_ui(name, value) for name, value in zip(FIELDS, args)}


SEVERAL_REFUSED = {
    "solo": ("active", "with several fusion checkpoints model A is the active checkpoint (solo='active')"),
    "mask_ema": (0.0, "the steadier mask is for two models; leave it at 0 with several fusion checkpoints"),
    "mask_freeze": (0, "the frozen mask is for two models; leave it at 0 with several fusion checkpoints"),
}
"""What several fusion checkpoints need of the other fields (value, why)."""


def _check_several(values: dict) -> None:
    if not METHODS[values["method"]].fuses_several:
        raise ValueError("models: several fusion checkpoints fuse by SNB only (Regions names a checkpoint per region)")
    for field, (allowed, why) in SEVERAL_REFUSED.items():
        if values.get(field, allowed) != allowed:
            raise ValueError(f"models: {why}")


FIELDS: tuple[str, ...] = tuple(FusionArgs.__fields__)
"""Field order of the UI components and of positional API arguments."""
REGION_FIELDS: tuple[str, ...] = tuple(RegionArgs.__fields__)
MODEL_FIELDS: tuple[str, ...] = tuple(FusionModelArgs.__fields__)
FLAG_FIELDS: tuple[str, ...] = tuple(name for name, field in FusionArgs.__fields__.items() if field.outer_type_ is StrictBool)
"""The on/off fields (a checkbox; ``True`` / ``False`` in the infotext)."""


def choices_of(name: str) -> list[str]:
    """The values a field of fixed choices takes, as text (for radios and axes): its
    ``Literal`` type's, or a range of at most three whole numbers (``mode``); else none."""
    literal = typing.get_args(FusionArgs.__fields__[name].outer_type_)
    if literal:
        return [str(choice) for choice in literal]
    bound = BOUNDS.get(name)
    if bound is not None and bound.integer and not bound.also and bound.high - bound.low <= 2:
        return [str(value) for value in range(int(bound.low), int(bound.high) + 1)]
    return []


def _from_ui(name: str, value: Any) -> Any:
    """Gradio gives numbers as floats, radios as strings and an empty dropdown as None."""
    kind = FusionArgs.__fields__[name].type_
    if value is None and isinstance(kind, type) and issubclass(kind, str):
        return ""
    if name in INTEGER_FIELDS and isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return value
        return int(number) if math.isfinite(number) and number.is_integer() else value
    return value


def _to_ui(name: str, value: Any) -> Any:
    if name == "regions":
        return regions_json(value)
    if name == "models":
        return models_json(value)
    return str(value) if name in ("mode", "stride") else value  # a radio and a dropdown of text


def models_json(models: Sequence[FusionModelArgs]) -> str:
    """Compact JSON of the further fusion checkpoints, defaults left out (UI value, infotext)."""
    return json.dumps([model.compact() for model in models], separators=(",", ":"))


def regions_json(regions: Sequence[RegionArgs]) -> str:
    """Compact JSON of the regions, defaults left out (UI value, infotext)."""
    return json.dumps([region.compact() for region in regions], separators=(",", ":"))
