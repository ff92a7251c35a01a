"""What the previews keep of the fused steps: their maps, a bounded and evenly spread sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Trace:
    """What decided one fused SNB step, for the previews (left on the sampling device: the few
    shown are moved when drawn)."""

    batch: int
    hires: bool
    step: int
    t: float
    saliency_a: torch.Tensor
    """(N, 1, h, w) per image of the batch, like ``saliency_b`` and ``mask``; for cross-model
    guidance ``|D_A(c) - D_B(c)|``, with no B saliency and no mask."""
    saliency_b: torch.Tensor | None
    mask: torch.Tensor | None
    position: int = 0
    """Index among the batch's fused steps (the preview spreads its picks over these)."""


class Thinned:
    """A sample of a stream of traces, spread from the first to the latest, that never holds
    more than ``2 * limit + 1`` of them (a preview shows ``limit``; a 1000-step generation
    must not keep 1000 sets of maps). Every ``stride``-th trace is kept; when that is more
    than ``2 * limit``, every other kept one is dropped and the stride doubles."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.kept: list[Trace] = []
        self.last: Trace | None = None
        self.stride = 1
        self.seen = 0

    def add(self, trace: Trace) -> None:
        """Offer the next trace (the previous latest is let go unless it was kept)."""
        trace.position = self.seen
        if self.seen % self.stride == 0:
            self.kept.append(trace)
            if len(self.kept) > 2 * self.limit:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.last = trace
        self.seen += 1

    def traces(self) -> list[Trace]:
        """The kept traces and the latest one."""
        if self.last is None or (self.kept and self.kept[-1] is self.last):
            return list(self.kept)
        return [*self.kept, self.last]
