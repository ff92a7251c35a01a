"""A first look at argument values, before any validator reads them: what no valid argument
looks like (deep nesting, huge collections, oversized texts) is refused at a bounded cost,
with the path of the value in the message."""

from __future__ import annotations

import json
from typing import Any

from lib_fusion.arguments import masks
from lib_fusion.arguments.messages import cut

MAX_TEXT = 100_000
"""Characters of a text field (prompt, checkpoint name); a mask has its own limit."""
MAX_DEPTH = 6
"""Nesting of a valid argument: object > regions > region > box is three levels."""
MAX_ITEMS = 10_000
"""Values (objects, lists, numbers, texts) in one argument object; a valid one has a few hundred."""
MAX_REGIONS_TEXT = 32 * 2**20
"""Characters of the regions' JSON text, masks included (16 canonical 1-bit masks of a
2048x2048 image take well under a megabyte)."""


def screen(value: Any, path: str = "") -> None:
    """Refuse what no valid argument looks like before a validator reads it: nesting deeper
    than :data:`MAX_DEPTH`, more than :data:`MAX_ITEMS` values, texts over their limit.
    Iterative, so a value nested 100,000 deep costs a loop, not the interpreter's stack, and
    counted as it goes, so a list of millions costs :data:`MAX_ITEMS` steps before it is
    refused. Raises ``ValueError`` naming the path (``regions[0].box``)."""
    pending: list[tuple[Any, str, int]] = [(value, path, 0)]
    count = 0
    while pending:
        item, where, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{where}: nested deeper than any valid value ({MAX_DEPTH} levels)")
        if isinstance(item, (dict, list, tuple)):
            count += len(item)
            if count > MAX_ITEMS:
                raise ValueError(f"{path or 'the arguments'}: more than {MAX_ITEMS} values; a valid argument has a few hundred")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            dotted = isinstance(item, dict)
            pending.extend((v, (f"{where}.{k}" if where else str(k)) if dotted else f"{where}[{k}]", depth + 1) for k, v in children)
        elif isinstance(item, str):
            _screen_text(item, where)


def _screen_text(text: str, where: str) -> None:
    if where.endswith("mask"):
        if len(text) > masks.MAX_TEXT:
            raise ValueError(f"{where}: {len(text)} characters is over the {masks.MAX_BYTES // 2**20} MiB limit for a mask PNG")
    elif where == "regions":  # JSON text (the UI's form), masks included
        if len(text) > MAX_REGIONS_TEXT:
            raise ValueError(f"{where}: {len(text)} characters; the regions' JSON may have at most {MAX_REGIONS_TEXT}")
        # A mask is base64, which has no comma or bracket: more of them than values allowed
        # is refused before the JSON parser builds millions of objects.
        if sum(text.count(mark) for mark in ",[{") > MAX_ITEMS:
            raise ValueError(f"{where}: more than {MAX_ITEMS} values; a valid argument has a few hundred")
    elif len(text) > MAX_TEXT:
        raise ValueError(f"{where}: {len(text)} characters; at most {MAX_TEXT}")


def json_list(value: Any, limit: int, items: str, why: str) -> Any:
    """A list field: the UI (and an API caller that wishes) sends it as JSON text, parsed and
    screened here; at most ``limit`` items. Anything else is left to the field's type."""
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None
        except (ValueError, RecursionError) as error:  # nesting or digits past Python's limits
            raise ValueError(f"not usable JSON ({cut(str(error), 80)})") from None
        screen(value)
    if isinstance(value, list) and len(value) > limit:
        raise ValueError(f"{len(value)} {items}; at most {limit} ({why})")
    return value
