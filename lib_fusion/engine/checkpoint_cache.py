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
    config_beside: tuple[int, int] | None = None
    """The ``.yaml`` beside the file as it is now (mtime, size; None: none), which both host
    families read for what the checkpoint predicts (eps or v): one added later reloads it."""

    def same_file(self, other: CacheKey) -> bool:
        """Built from the same file as it is now, for the same active family (parts aside)."""
        mine = (self.filename, self.mtime_ns, self.size, self.family, self.config_beside)
        return mine == (other.filename, other.mtime_ns, other.size, other.family, other.config_beside)

    @classmethod
    def for_file(cls, filename: str, family: Hashable, parts: tuple[str, ...]) -> CacheKey:
        stat = os.stat(filename)
        try:
            beside = os.stat(os.path.splitext(filename)[0] + ".yaml")
            config_beside = (beside.st_mtime_ns, beside.st_size)
        except OSError:
            config_beside = None
        return cls(os.path.abspath(filename), stat.st_mtime_ns, stat.st_size, family, parts, config_beside)


@dataclass
class ModelCache:
    """Holds up to ``capacity`` secondary models, least recently used evicted first; a model
    is freed before another is loaded in its place (never two loads' worth at once)."""

    _entries: OrderedDict = field(default_factory=OrderedDict)
    """CacheKey -> (model, seconds its load took), least recently used first."""
    loads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: CacheKey, loader: Callable[[], Any], capacity: int = 1) -> Any:
        """The model for ``key``: a held one built from the same file with at least these parts
        (a UNet held with its text encoder serves a request for the UNet), else loaded, after
        freeing a smaller build of the same file and then the least recently used models."""
        with self._lock:
            held = next((other for other in self._entries if other.same_file(key) and set(key.parts) <= set(other.parts)), None)
            if held is not None:
                self._entries.move_to_end(held)
                self._shrink_to(capacity)  # the budget was lowered since
                return self._entries[held][0]
            for other in [other for other in self._entries if other.same_file(key)]:
                self._release(other)  # a smaller build of this file: one copy of the file at a time
            while self._entries and len(self._entries) >= max(1, capacity):
                self._release(next(iter(self._entries)))
            start = time.perf_counter()
            value = loader()
            self._entries[key] = (value, time.perf_counter() - start)
            self.loads += 1
            return value

    def holds(self, filename: str) -> bool:
        """A model built from this file is held (whatever its parts)."""
        return any(key.filename == os.path.abspath(filename) for key in self._entries)

    def shrink(self, capacity: int) -> None:
        """Free the least recently used models beyond ``capacity`` (the budget was lowered)."""
        with self._lock:
            self._shrink_to(capacity)

    def _shrink_to(self, capacity: int) -> None:
        while len(self._entries) > max(1, capacity):
            self._release(next(iter(self._entries)))

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
        # The closure holds the model too: dropped before collecting, or the model (its parts
        # refer to each other, so only the collector frees them) would stay in memory until the
        # next collection, i.e. the next unload.
        del free
        gc.collect()


CACHE = ModelCache()
"""The process-wide cache of secondary models (as many as the Settings allow)."""
