"""The stand-in WebUI of the host tests with an SD1-shaped UNet, for benchmarks."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests" / "host" / "fake_webui"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from standin import WebUI  # noqa: E402

from bench.sd_like_unet import SDLikeUNet  # noqa: E402


def webui(hidden: int = 64) -> WebUI:
    """A stand-in WebUI whose checkpoints carry random SD1-shaped UNets."""
    torch.set_grad_enabled(False)
    root = Path(tempfile.mkdtemp(prefix="model-fusion-bench-"))
    return WebUI(root, unet_class=SDLikeUNet, hidden=hidden)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The fastest of ``repeats`` runs (seconds) and the last result: the least noisy figure."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def machine() -> str:
    import os
    import platform

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
