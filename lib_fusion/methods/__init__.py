"""The fusion methods, one module and one object each, and their registry.

Adding a method: a module here with its :class:`~lib_fusion.methods.base.Method` subclass (its
fields, answers and fused step) and its object in :data:`METHODS`; a field it alone reads also
gets its type on ``FusionArgs`` and its row in the field table (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Any

from lib_fusion.methods.base import ACTIVE_ALONE, FUSION_ALONE, Method
from lib_fusion.methods.base_uncond import BASE_UNCOND
from lib_fusion.methods.guidance import GUIDANCE
from lib_fusion.methods.regions import REGIONS
from lib_fusion.methods.snb import SNB

METHODS: dict[str, Method] = {method.name: method for method in (SNB, REGIONS, GUIDANCE, BASE_UNCOND)}
"""Every method by name, in the order the accordion offers them (the first is the default)."""


def method_of(args: Any) -> Method:
    """The method object of these arguments (anything with a valid ``method``)."""
    return METHODS[args.method]


__all__ = ["ACTIVE_ALONE", "FUSION_ALONE", "METHODS", "Method", "method_of"]
