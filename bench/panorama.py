"""Panorama 512x2048 (SD1 window 64, stride 8): view batch 4 against view batch 1.

    python -m bench.panorama [--steps 4] [--repeats 2]
    python -m bench.panorama --url http://127.0.0.1:7860 [--steps 1] [--repeats 2]

Prints the ratio of the unbatched to the batched time of the same generation, measured
in one run, and how far apart the two images are. In-process on the stand-in WebUI (with
what batching gives its UNet alone), or with ``--url`` through a running WebUI's API with
its active checkpoint; the two run in turn, round after round, and the speed-up is
the median (min, max) of each round's ratio.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
from typing import Callable

import numpy as np
import torch
from PIL import Image

from bench import api
from bench.standin import add_device_options, from_options, interleaved, machine, ratios, spread, timed, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=64, help="UNet width (channels of the first level)")
    parser.add_argument("--window", type=int, default=64, help="window in latent pixels (SD1's native 64)")
    parser.add_argument("--url", help="a running WebUI started with --api")
    add_device_options(parser)
    options = parser.parse_args()
    if options.url:
        through_api(options.url.rstrip("/"), options)
        return
    host = from_options(options)
    fusion = {"enabled": True, "method": "regions", "window": options.window, "stride": 8, "bootstrapping": 0.0}
    size = {"width": options.width, "height": options.height, "steps": options.steps}
    host.latents(None, extension=False, steps=1)  # warm-up

    images: dict[int, torch.Tensor] = {}

    def run(view_batch_size: int) -> Callable[[], float]:
        def once() -> float:
            seconds, images[view_batch_size] = timed(lambda: host.latents({**fusion, "view_batch_size": view_batch_size}, **size))
            return seconds

        return once

    times = interleaved(options.repeats, {"view batch 4": run(4), "view batch 1": run(1)})
    difference = (images[1] - images[4]).abs().max().item()
    unet = unet_batching(host, max(3, options.repeats))
    print(f"machine: {machine()}")
    print(f"panorama {options.width}x{options.height}, {unet_name(options)}, {options.steps} steps, {options.repeats} interleaved rounds")
    print(f"view batch 1: {statistics.median(times['view batch 1']):.2f} s, view batch 4: {statistics.median(times['view batch 4']):.2f} s")
    speedups = ratios(times["view batch 1"], times["view batch 4"])
    print(f"speed-up of view batch 4 over 1: {spread(speedups, 2)} (target >= 1.3x); max |difference| {difference:.2e}")
    print(f"the UNet alone, 8 rows per call against 4 calls of 2: {spread(unet, 2)} (what batching can give on this machine)")


def through_api(url: str, options: argparse.Namespace) -> None:
    """The same panorama through the WebUI's txt2img, view batch 4 and 1 in turn."""
    body = {"prompt": "a wide mountain valley at dawn", "negative_prompt": "blurry", "seed": 7, "sampler_name": "Euler"}
    body.update(width=options.width, height=options.height, steps=options.steps, cfg_scale=7)
    fusion = {"enabled": True, "method": "regions", "window": options.window, "stride": 8, "bootstrapping": 0.0}
    images: dict[int, np.ndarray] = {}

    def run(view_batch_size: int) -> Callable[[], float]:
        def once() -> float:
            body["alwayson_scripts"] = {"model fusion": {"args": [{**fusion, "view_batch_size": view_batch_size}]}}
            seconds, answer = api.call(url, "/sdapi/v1/txt2img", body)
            images[view_batch_size] = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))), dtype=np.int16)
            return seconds

        return once

    times = interleaved(options.repeats, {"view batch 4": run(4), "view batch 1": run(1)})
    difference = int(np.abs(images[1] - images[4]).max())
    print(f"WebUI at {url}: panorama {options.width}x{options.height}, {options.steps} steps, {options.repeats} interleaved rounds")
    print(f"view batch 1: {statistics.median(times['view batch 1']):.1f} s, view batch 4: {statistics.median(times['view batch 4']):.1f} s")
    speedups = ratios(times["view batch 1"], times["view batch 4"])
    print(f"speed-up of view batch 4 over 1: {spread(speedups, 2)} (target >= 1.3x); max pixel difference {difference}/255")


def unet_batching(host, rounds: int) -> list[float]:
    """The active UNet on 4 views x (cond, uncond) rows: 4 calls of 2 rows over one call of
    8, interleaved; one ratio per round."""
    from modules import shared

    unet = shared.sd_model.model.diffusion_model
    device = shared.sd_model.device
    x, t, context = torch.randn(8, 4, 64, 64, device=device), torch.full((8,), 500.0, device=device), torch.randn(8, 77, 16, device=device)
    times = interleaved(
        rounds,
        {
            "single": lambda: timed(lambda: [unet(x[i : i + 2], t[i : i + 2], context=context[i : i + 2]) for i in range(0, 8, 2)])[0],
            "batched": lambda: timed(lambda: unet(x, t, context=context))[0],
        },
    )
    return ratios(times["single"], times["batched"])


if __name__ == "__main__":
    main()
