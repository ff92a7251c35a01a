"""SNB over three checkpoints, as paired ratios of interleaved runs.

    python -m bench.many [--size 512] [--hidden 96] [--rounds 5]

On the stand-in WebUI with random SD1-shaped UNets (``bench/sd_like_unet.py``). Every round
runs, in turn, a generation with each checkpoint alone (A, B, C: the WebUI's own steps with
that checkpoint active) and one fusing the three at every step; the ratio of a round is the
fused generation's denoiser time over the three alone ones added up. Floor 1.000: a fused
step makes exactly the UNet calls of the three alone steps (each model once on its cond and
uncond rows). Target <= 1.02. Like ``bench.costs``, only the CFG denoiser's calls are timed.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from bench.costs import DenoiserClock
from bench.standin import add_device_options, from_options, interleaved, machine, ratios, spread, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--hidden", type=int, default=96, help="UNet width (channels of the first level)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (one ratio each)")
    parser.add_argument("--steps", type=int, default=8, help="Euler steps of each generation")
    add_device_options(parser)
    options = parser.parse_args()
    host = from_options(options)
    _third_checkpoint(host, options)
    from modules import shared

    shared.opts.model_fusion_max_models = 2
    size = {"width": options.size, "height": options.size, "sampler_name": "Euler", "steps": options.steps}
    fused = {"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1, "models": [{"model": "artist"}]}
    host.latents(fused, **{**size, "steps": 1})  # loads and caches both fusion checkpoints
    clock = DenoiserClock()

    def denoising(active: str, fusion: dict | None) -> Callable[[], float]:
        def run() -> float:
            host.load(active)
            before = clock.seconds
            host.latents(fusion, extension=fusion is not None, **size)
            return clock.seconds - before

        return run

    times = interleaved(
        options.rounds,
        {"A alone": denoising("general", None), "B alone": denoising("expert", None), "C alone": denoising("artist", None),
         "SNB of three": denoising("general", fused)},
    )  # fmt: skip
    clock.close()
    alone = [a + b + c for a, b, c in zip(times["A alone"], times["B alone"], times["C alone"])]
    print(f"machine: {machine()}")
    print(f"stand-in WebUI, {unet_name(options)}, {options.size}x{options.size}, {options.rounds} interleaved rounds")
    per_step = {name: sum(values) / (options.rounds * options.steps) * 1e3 for name, values in times.items()}
    print("denoiser time per step: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in per_step.items()))
    print(f"SNB of three step / (A step + B step + C step): {spread(ratios(times['SNB of three'], alone))}; floor 1.000; target <= 1.02")


def _third_checkpoint(host: Any, options: argparse.Namespace) -> None:
    """SD1.5's own UNet (``--ldm``) comes with two checkpoints: write the third."""
    from modules import sd_models

    path = host.models / "artist.safetensors"
    if not path.exists():
        from standin import write_checkpoint

        unet_class = type(host.unet())
        write_checkpoint(path, seed=3, hidden=320 if options.ldm else options.hidden, unet_class=unet_class)
        sd_models.list_models()


if __name__ == "__main__":
    main()
