"""The one argument model of the extension: UI values, API dicts and infotext all pass here.

Built on pydantic's v1 API, which both hosts provide: A1111 1.10 pins pydantic 1.10
(through fastapi 0.94) and newer hosts ship pydantic 2 with ``pydantic.v1`` beside it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

try:
    from pydantic.v1 import BaseModel, Extra, StrictBool, StrictInt, StrictStr, ValidationError, validator
except ImportError:  # pydantic 1.x before 1.10.17 has no v1 namespace
    from pydantic import BaseModel, Extra, StrictBool, StrictInt, StrictStr, ValidationError, validator

from lib_fusion.schedule import format_fusion_selection, parse_fusion_selection

TITLE = "Model Fusion"


class FusionArgumentError(ValueError):
    """A bad argument; the message names it and says what would be valid."""


class FusionArgs(BaseModel):
    """Every parameter of one fusion, with the official code's behaviour as defaults."""

    enabled: StrictBool = False
    model: StrictStr = ""
    """Fusion checkpoint: a title, name or hash the WebUI's checkpoint lookup resolves."""
    method: Literal["snb"] = "snb"
    prompt: StrictStr = ""
    """The fusion checkpoint's prompt; empty = the main prompt."""
    negative_prompt: StrictStr = ""
    """The fusion checkpoint's negative prompt; empty = the main negative prompt."""
    solo: Literal["active", "fusion"] = "active"
    """Role A: the model that runs alone outside the fusion window."""
    fusion_selection: StrictStr = "600,1,1"
    """The paper's ``v1,kg,ke``: window edge (DDPM timestep), A's and B's saliency factors."""
    mode: StrictInt = 2
    """0: A alone throughout; 1: fuse when t <= v1; 2: fuse while t > v1."""
    saliency_uncond: Literal["solo", "own"] = "solo"
    """B's guidance response against A's uncond (official) or its own."""
    text_encoder: Literal["solo", "own"] = "solo"
    """Both prompts through A's text encoder (official) or each model through its own."""
    blur: Literal["box", "gaussian"] = "box"
    mask: Literal["hard", "soft"] = "hard"

    class Config:
        extra = Extra.forbid
        allow_mutation = False

    @validator("fusion_selection")
    def _valid_selection(cls, value: str) -> str:
        return format_fusion_selection(*parse_fusion_selection(value))

    @validator("mode")
    def _valid_mode(cls, value: int) -> int:
        if value not in (0, 1, 2):
            raise ValueError("must be 0 (no fusion), 1 (fuse when t <= v1) or 2 (fuse while t > v1)")
        return value

    @validator("model", always=True)
    def _model_when_enabled(cls, value: str, values: dict) -> str:
        if values.get("enabled") and not value.strip():
            raise ValueError("choose a fusion checkpoint (a title, name or hash from the WebUI's checkpoint list)")
        return value.strip()

    @property
    def window(self) -> tuple[float, float, float]:
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
            return cls(**data)
        except ValidationError as error:
            raise FusionArgumentError(_describe(error, data)) from None

    @classmethod
    def from_script_args(cls, args: Sequence[Any]) -> FusionArgs:
        """The script's ``*args``: one dict (API), or the UI's values in :data:`FIELDS` order."""
        if not args:
            return cls()
        if isinstance(args[0], (dict, cls)):
            return cls.parse(args[0])
        if len(args) > len(FIELDS):
            raise FusionArgumentError(f"{TITLE}: got {len(args)} positional arguments, at most {len(FIELDS)} ({', '.join(FIELDS)})")
        return cls.parse({name: _from_ui(name, value) for name, value in zip(FIELDS, args)})

    def to_ui(self) -> list[Any]:
        """Positional values in :data:`FIELDS` order (what ``ui()`` returns)."""
        return [_to_ui(name, getattr(self, name)) for name in FIELDS]


FIELDS: tuple[str, ...] = tuple(FusionArgs.__fields__)
"""Field order of the UI components and of positional API arguments."""


def _from_ui(name: str, value: Any) -> Any:
    """Gradio gives numbers as floats, radios as strings and an empty dropdown as None."""
    if value is None and issubclass(FusionArgs.__fields__[name].type_, str):
        return ""
    if name == "mode" and isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if math.isfinite(number) and number.is_integer() else value
    return value


def _to_ui(name: str, value: Any) -> Any:
    return str(value) if name == "mode" else value


def _describe(error: ValidationError, data: dict) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "value_error.extra":
            message = f"unknown field; valid fields: {', '.join(FIELDS)}"
        elif field in data and repr(data[field]) not in message:
            message = f"{data[field]!r}: {message}"
        problems.append(message if message.startswith(field) else f"{field}: {message}")
    return f"{TITLE}: invalid argument{'s' if len(problems) > 1 else ''}: " + "; ".join(problems)
