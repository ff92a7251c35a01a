"""The secondary checkpoint: one cached copy, rebuilt only when its file or the active family changes.

Loading is injected (``loader``) so the cache policy is testable without the WebUI.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


class FusionModelError(ValueError):
    """A fusion checkpoint that cannot be used; the message names it and the fix."""


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
    """Holds at most one secondary model; a new key frees the old one before loading."""

    _key: CacheKey | None = None
    _value: Any = None
    loads: int = 0
    load_seconds: float | None = None
    """How long the held model took to load (the models route reports it)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: CacheKey, loader: Callable[[], Any]) -> Any:
        with self._lock:
            if self._key == key:
                return self._value
            self._release()
            start = time.perf_counter()
            value = loader()
            self._key, self._value = key, value
            self.load_seconds = time.perf_counter() - start
            self.loads += 1
            return value

    def unload(self) -> bool:
        """Free the cached model; True if one was held."""
        with self._lock:
            held = self._key is not None
            self._release()
            return held

    @property
    def key(self) -> CacheKey | None:
        return self._key

    @property
    def value(self) -> Any:
        """The held model, or None."""
        return self._value

    def _release(self) -> None:
        if self._key is None:
            return
        free = getattr(self._value, "free", None)
        self._key, self._value, self.load_seconds = None, None, None
        if callable(free):
            free()
        gc.collect()


CACHE = ModelCache()
"""The process-wide cache (one secondary model at a time)."""
