"""How the argument contract speaks of bad values: each value echoed briefly (a 10 MB
checkpoint name must not make a 10 MB message, and an integer past Python's digit limit has
no ``repr`` at all), and each problem pydantic found named by its path (``regions[1].box``)
with the value sent and what would be valid."""

from __future__ import annotations

from typing import Any, Sequence

SHOWN = 200
"""Characters of a bad value echoed in a message."""


def cut(text: str, limit: int = SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value: Any, limit: int = SHOWN) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {len(str(value)) if value.bit_length() < 10_000 else 'thousands of'} digits"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails is shown by its type
        return f"a {type(value).__name__}"
    return cut(text, limit)


_MISSING = object()


def _value_at(data: Any, loc: Sequence[Any]) -> Any:
    """The value the caller sent at ``loc`` (``("regions", 0, "model")``), or ``_MISSING``."""
    for part in loc:
        if isinstance(data, str):
            return _MISSING  # a list sent as JSON text: no path into it
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def describe(errors: list[dict[str, Any]], data: dict, fields: Sequence[str], item_fields: dict[str, Sequence[str]]) -> list[str]:
    """One line per problem pydantic found (its ``errors()``): the field's path, the value the
    caller sent (cut short; never a mask's base64) and what is wrong; an unknown field lists
    the valid ones (``fields``, or ``item_fields[list]`` inside an item of a list field)."""
    problems = []
    for item in errors:
        loc = [part for part in item["loc"] if part != "__root__"]
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        message = item["msg"]
        if item["type"] == "value_error.extra":
            valid = item_fields.get(loc[0], fields) if len(loc) > 1 else fields
            message = f"unknown field; valid fields: {', '.join(valid)}"
        elif not field:
            problems.append(message)
            continue
        else:
            value = _value_at(data, loc)
            echo = value is not _MISSING and not isinstance(value, dict) and tuple(loc[::2]) != ("regions", "mask")  # no base64
            if echo and shown(value) not in message:
                message = f"{shown(value)}: {message}"
        problems.append(message if message.startswith(field) else f"{field}: {message}")
    return problems
