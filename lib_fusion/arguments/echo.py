"""Bad values echoed in messages, briefly: a 10 MB checkpoint name must not make a 10 MB
message, and an integer past Python's digit limit has no ``repr`` at all."""

from __future__ import annotations

from typing import Any

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
