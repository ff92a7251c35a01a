"""The secondary checkpoints: cached (least recently used dropped first when the budget is
reached), each rebuilt only when its file or the active family changes.

Loading is injected (``loader``) so the cache policy is testable without the WebUI.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


class FusionModelError(ValueError):
    """A fusion checkpoint that cannot be used; the message names it and the fix."""

    def at(self, place: str) -> FusionModelError:
        """The same error, naming where the checkpoint was given (``Model Fusion: models[1].model: …``)."""
        head, sep, rest = str(self).partition(": ")
        return FusionModelError(f"{head}: {place}: {rest}" if sep else f"{place}: {head}")


Shapes = dict[str, tuple[int, ...]]
"""UNet weight name -> shape."""


def family_mismatch(weights: Shapes, active: Shapes) -> str | None:
    """Why a UNet of these weight shapes cannot stand in for the active one (another family:
    SD1 vs SD2 vs SDXL, inpainting vs plain), or None when it fits weight for weight."""
    mismatched = sorted(k for k in set(active) & set(weights) if tuple(active[k]) != tuple(weights[k]))
    if mismatched:
        k = mismatched[0]
        return f"{k} is {tuple(weights[k])} but the active model's is {tuple(active[k])}"
    missing = sorted(set(active) - set(weights))
    if missing:
        return f"{len(missing)} UNet weights are missing, e.g. {missing[0]}"
    unexpected = sorted(set(weights) - set(active))
    if unexpected:
        return f"{len(unexpected)} UNet weights are unknown, e.g. {unexpected[0]}"
    return None


@dataclass(frozen=True)
class CacheKey:
    """What makes a loaded secondary model stale."""

    filename: str
    mtime_ns: int
    size: int
    family: Hashable
    """The active model's architecture (its config), so a family switch reloads."""
    parts: tuple[str, ...]
    """Which parts were built ("unet", "text_encoder")."""

    @classmethod
    def for_file(cls, filename: str, family: Hashable, parts: tuple[str, ...]) -> CacheKey:
        stat = os.stat(filename)
        return cls(os.path.abspath(filename), stat.st_mtime_ns, stat.st_size, family, parts)


@dataclass
class ModelCache:
    """Holds up to ``capacity`` secondary models, least recently used evicted first; a model
    is freed before another is loaded in its place (never two loads' worth at once)."""

    _entries: OrderedDict = field(default_factory=OrderedDict)
    """CacheKey -> (model, seconds its load took), least recently used first."""
    loads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: CacheKey, loader: Callable[[], Any], capacity: int = 1) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                while len(self._entries) > max(1, capacity):  # the budget was lowered since
                    self._release(next(iter(self._entries)))
                return self._entries[key][0]
            while self._entries and len(self._entries) >= max(1, capacity):
                self._release(next(iter(self._entries)))
            start = time.perf_counter()
            value = loader()
            self._entries[key] = (value, time.perf_counter() - start)
            self.loads += 1
            return value

    def unload(self) -> bool:
        """Free every cached model; True if one was held."""
        with self._lock:
            held = bool(self._entries)
            for key in list(self._entries):
                self._release(key)
            return held

    @property
    def key(self) -> CacheKey | None:
        """The most recently used model's key, or None."""
        return next(reversed(self._entries), None)

    @property
    def value(self) -> Any:
        """The most recently used model, or None."""
        return self._entries[self.key][0] if self._entries else None

    @property
    def load_seconds(self) -> float | None:
        """How long the most recently used model took to load (the models route reports it)."""
        return self._entries[self.key][1] if self._entries else None

    def held(self) -> list[tuple[CacheKey, Any, float]]:
        """Every cached model, least recently used first: (key, model, load seconds)."""
        return [(key, value, seconds) for key, (value, seconds) in self._entries.items()]

    def _release(self, key: CacheKey) -> None:
        value, _ = self._entries.pop(key)
        free = getattr(value, "free", None)
        del value
        if callable(free):
            free()
        gc.collect()


CACHE = ModelCache()
"""The process-wide cache of secondary models (as many as the Settings allow)."""
