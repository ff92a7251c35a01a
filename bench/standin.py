"""The stand-in WebUI of the host tests with an SD1-shaped UNet, for benchmarks."""

from __future__ import annotations

import argparse
import statistics
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


def clock() -> float:
    """Seconds for timing: on the CPU the process's CPU time (a 2-core VM shared with other
    work stretches wall time by tens of percent from run to run, CPU time barely; with one
    torch thread it is the work done), on a GPU wall time (the device's work is not CPU time)."""
    from modules import devices

    return time.perf_counter() if devices.device.type == "cuda" else time.process_time()


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--half``: where the stand-in WebUI keeps its models, and whether
    its UNets run in float16 as the WebUI runs them on a GPU (without ``--no-half``)."""
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to measure on a GPU")
    parser.add_argument("--half", action="store_true", help="float16 UNets (the WebUI's GPU default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (1: CPU time is the work done)")
    parser.add_argument(
        "--ldm", metavar="PATH", help="SD1.5's own UNet from a checkout holding ldm (a WebUI's repositories/stable-diffusion-stability-ai)"
    )


def webui(hidden: int = 64, device: str = "cpu", half: bool = False, ldm: str | None = None) -> WebUI:
    """A stand-in WebUI whose checkpoints carry random SD1-shaped UNets, on ``device``: the
    scaled-down one, or with ``ldm`` SD1.5's own (``hidden`` is then its width, 320)."""
    from modules import devices

    torch.set_grad_enabled(False)
    devices.device = torch.device(device)
    devices.dtype_unet = torch.float16 if half else torch.float32
    root = Path(tempfile.mkdtemp(prefix="model-fusion-bench-"))
    if ldm is None:
        return WebUI(root, unet_class=SDLikeUNet, hidden=hidden)
    from bench.ldm_unet import LDMUNet, use_ldm

    use_ldm(ldm)
    return WebUI(root, unet_class=LDMUNet, hidden=hidden, extra_checkpoints=False)


def from_options(options: argparse.Namespace) -> WebUI:
    """The stand-in WebUI the command line asks for."""
    if options.device == "cpu":
        torch.set_num_threads(options.threads)
    return webui(hidden=320 if options.ldm else options.hidden, device=options.device, half=options.half, ldm=options.ldm)


def unet_name(options: argparse.Namespace) -> str:
    return "SD1.5's UNet (ldm, random weights)" if options.ldm else f"SD1-like UNet, hidden {options.hidden}"


def synchronize() -> None:
    """Wait for queued GPU work, so a host clock measures it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds of one run of ``fn`` (queued GPU work included) and its result."""
    synchronize()
    start = clock()
    result = fn()
    synchronize()
    return clock() - start, result


def interleaved(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Seconds of each configuration, taken in turn round after round (A, B, fused, A, B,
    fused, ...), so that a drift of the machine touches every configuration alike and the
    i-th figures of two configurations form a pair. Each callable returns its own seconds."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(run())
    return seconds


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """The paired ratios of two interleaved series."""
    return [a / b for a, b in zip(numerator, denominator)]


def spread(values: list[float], digits: int = 3) -> str:
    """``median M (min m, max x over n)``: the figure and how far the runs scattered."""
    return f"median {statistics.median(values):.{digits}f} (min {min(values):.{digits}f}, max {max(values):.{digits}f} over {len(values)})"


def machine() -> str:
    import os
    import platform

    from modules import devices

    processor = platform.processor() or platform.machine()
    timing = "wall time" if devices.device.type == "cuda" else "CPU time"
    where = f"{processor}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, {timing}"
    if devices.device.type == "cuda":
        where += f"; {torch.cuda.get_device_name(devices.device)}, UNet {str(devices.dtype_unet).removeprefix('torch.')}"
    return where
