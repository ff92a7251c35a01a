"""Panorama windows: shifted windows (SpotDiffusion) against MultiDiffusion's stride 8, and a seam measure.

    python -m bench.windows [--steps 2] [--rounds 3] [--hidden 64] [--seam-only]

1. UNet work and time of a 512x2048 panorama at SD1's window 64 (latent 64 x 256) on the
   stand-in WebUI with an SD1-shaped UNet: UNet rows per step (counted: each (window, region)
   pass is a cond and an uncond row per image) and the paired time ratio of interleaved runs.
   The time ratio follows the rows ratio, pulled down by what does not scale with windows
   (prompt encoding, the VAE).
2. Seams, with no real weights: :class:`SmoothUNet` denoises every noise level to a 5x5
   mean of its input, an output smooth in x whose zero padding darkens each window's edges,
   so a seam shows in the final latent as a jump. Measured as the mean |horizontal gradient|
   on the columns where the unshifted tiling of window 8 has its borders, over the mean
   elsewhere, per seed: about 1 without seams, above 1 with them. Plain non-overlapping
   tiles (stride = window) must show their seams, or the measure is blind.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench.standin import add_device_options, from_options, interleaved, machine, ratios, spread, timed, unet_name


class SmoothUNet(torch.nn.Module):
    """``eps = x - mean5x5(x)``: k-diffusion's denoised ``x - sigma eps(c_in x)`` is then close
    to a 5x5 mean of x at high noise; a window's zero padding pulls its edge pixels down."""

    def __init__(self, hidden: int = 16, **_: object) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))  # a checkpoint needs a weight

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None, y: object = None) -> torch.Tensor:
        blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
        return (x - blurred) * self.gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--hidden", type=int, default=64, help="UNet width (channels of the first level)")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=8, help="seeds of the seam measure")
    parser.add_argument("--seam-only", action="store_true", help="skip the timed panorama")
    add_device_options(parser)
    options = parser.parse_args()
    print(f"machine: {machine_line(options)}")
    if not options.seam_only:
        panorama(options)
    seams(options.seeds)


def machine_line(options: argparse.Namespace) -> str:
    if options.device == "cpu":
        torch.set_num_threads(options.threads)
    return machine()


def panorama(options: argparse.Namespace) -> None:
    host = from_options(options)
    size = {"width": options.width, "height": options.height, "steps": options.steps}
    configurations = {
        "MultiDiffusion stride 8": {"windows": "overlap", "stride": 8},
        "shifted windows": {"windows": "shifted"},
    }
    rows: dict[str, float] = {}

    def run(name: str):
        def once() -> float:
            fusion = {"enabled": True, "method": "regions", "bootstrapping": 0.0, **configurations[name]}
            p = host.processing(fusion, **size)
            from modules import processing

            seconds, _ = timed(lambda: processing.process_images(p))
            stats = p.model_fusion_run.stats
            rows[name] = 2 * stats.region_passes / options.steps  # a cond and an uncond row per pass (batch 1)
            return seconds

        return once

    host.latents(None, extension=False, steps=1, width=64, height=64)  # warm-up
    times = interleaved(options.rounds, {name: run(name) for name in configurations})
    overlap, shifted = configurations
    canvas = f"{options.width}x{options.height} (latent {options.width // 8} x {options.height // 8})"
    print(f"panorama {canvas}, window 64, {unet_name(options)}, {options.steps} steps, {options.rounds} rounds")
    for name in configurations:
        print(f"  {name}: {rows[name]:.1f} UNet rows per step, {statistics.median(times[name]):.1f} s per generation")
    floor = rows[overlap] / rows[shifted]
    print(f"  rows: {floor:.2f}x fewer; time ratio MultiDiffusion / shifted: {spread(ratios(times[overlap], times[shifted]), 2)}")
    print("  (prompt encoding and the VAE do not shrink with the windows, the per-window work beside the UNet does)")


def seams(seeds: int) -> None:
    """The seam measure on the stand-in WebUI of the host tests (tiny UNet, window 8)."""
    root = Path(__file__).resolve().parents[1] / "tests" / "host" / "fake_webui"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from standin import WebUI

    torch.set_grad_enabled(False)
    host = WebUI(Path(tempfile.mkdtemp(prefix="model-fusion-seams-")), unet_class=SmoothUNet, extra_checkpoints=False)
    window, width = 8, 64  # latent 8 x 64: eight windows of 8 in a row
    configurations = {
        "plain tiles (stride = window)": {"windows": "overlap", "stride": window},
        "MultiDiffusion stride 4": {"windows": "overlap", "stride": 4},
        "shifted windows": {"windows": "shifted"},
    }
    borders = torch.zeros(width - 1, dtype=torch.bool)
    borders[window - 1 :: window] = True  # the gradient between column 8k-1 and 8k
    print(f"seams: latent 8 x {width}, window {window}, SmoothUNet, 20 Euler steps, {seeds} seeds; |d/dx| on tile borders / elsewhere")
    for name, layout in configurations.items():
        fusion = {"enabled": True, "method": "regions", "bootstrapping": 0.0, "window": window, **layout}
        measures = []
        for seed in range(seeds):
            latent = host.latents(fusion, steps=20, seed=seed, width=width * 8, height=64)[0]
            gradient = (latent[..., 1:] - latent[..., :-1]).abs().mean(dim=(0, 1))
            measures.append(float(gradient[borders].mean() / gradient[~borders].mean()))
        print(f"  {name}: {spread(measures, 2)}")


if __name__ == "__main__":
    main()
