"""Panorama 512x2048 (SD1 window 64, stride 8): view batch 4 against view batch 1.

    python -m bench.panorama [--steps 4] [--repeats 2]
    python -m bench.panorama --url http://127.0.0.1:7860 [--steps 1] [--repeats 2]

Prints the ratio of the unbatched to the batched time of the same generation, measured
in one run, and how far apart the two images are. In-process on the stand-in WebUI (with
what batching gives its UNet alone), or with ``--url`` through a running WebUI's API with
its active checkpoint, runs taking turns.
"""

from __future__ import annotations

import argparse
import base64
import io

import numpy as np
import torch
from PIL import Image

from bench import api
from bench.standin import add_device_options, best_of, from_options, machine, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=64, help="UNet width (channels of the first level)")
    parser.add_argument("--url", help="a running WebUI started with --api")
    add_device_options(parser)
    options = parser.parse_args()
    if options.url:
        through_api(options.url.rstrip("/"), options)
        return
    host = from_options(options)
    fusion = {"enabled": True, "method": "regions", "stride": 8, "bootstrapping": 0.0}
    size = {"width": options.width, "height": options.height, "steps": options.steps}
    host.latents(None, extension=False, steps=1)  # warm-up

    def run(view_batch_size: int) -> torch.Tensor:
        return host.latents({**fusion, "view_batch_size": view_batch_size}, **size)

    one, image_one = best_of(options.repeats, lambda: run(1))
    four, image_four = best_of(options.repeats, lambda: run(4))
    difference = (image_one - image_four).abs().max().item()
    ceiling = unet_batching_ceiling(host, max(3, options.repeats))
    print(f"machine: {machine()}")
    print(f"panorama {options.width}x{options.height}, {unet_name(options)}, {options.steps} steps, best of {options.repeats}")
    print(f"view batch 1: {one:.2f} s, view batch 4: {four:.2f} s")
    print(f"speed-up of view batch 4 over 1: {one / four:.2f}x (target >= 1.3x); max |difference| {difference:.2e}")
    print(f"the UNet alone, 8 rows per call against 2: {ceiling:.2f}x (what batching can give on this machine)")


def through_api(url: str, options: argparse.Namespace) -> None:
    """The same panorama through the WebUI's txt2img, view batch 4 and 1 in turn."""
    body = {"prompt": "a wide mountain valley at dawn", "negative_prompt": "blurry", "seed": 7, "sampler_name": "Euler"}
    body.update(width=options.width, height=options.height, steps=options.steps, cfg_scale=7)
    fusion = {"enabled": True, "method": "regions", "stride": 8, "bootstrapping": 0.0}
    times: dict[int, list[float]] = {1: [], 4: []}
    images: dict[int, np.ndarray] = {}
    for _ in range(options.repeats):
        for view_batch_size in (4, 1):
            body["alwayson_scripts"] = {"model fusion": {"args": [{**fusion, "view_batch_size": view_batch_size}]}}
            seconds, answer = api.call(url, "/sdapi/v1/txt2img", body)
            times[view_batch_size].append(seconds)
            images[view_batch_size] = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))), dtype=np.int16)
    one, four = min(times[1]), min(times[4])
    difference = int(np.abs(images[1] - images[4]).max())
    print(f"WebUI at {url}: panorama {options.width}x{options.height}, {options.steps} steps, best of {options.repeats}")
    print(f"view batch 1: {one:.1f} s, view batch 4: {four:.1f} s (all: {times})")
    print(f"speed-up of view batch 4 over 1: {one / four:.2f}x (target >= 1.3x); max pixel difference {difference}/255")


def unet_batching_ceiling(host, repeats: int) -> float:
    """The active UNet on 4 views x (cond, uncond) rows: one call of 8 rows against 4 calls of 2."""
    from modules import shared

    unet = shared.sd_model.model.diffusion_model
    device = shared.sd_model.device
    x, t, context = torch.randn(8, 4, 64, 64, device=device), torch.full((8,), 500.0, device=device), torch.randn(8, 77, 16, device=device)
    single, _ = best_of(repeats, lambda: [unet(x[i : i + 2], t[i : i + 2], context=context[i : i + 2]) for i in range(0, 8, 2)])
    batched, _ = best_of(repeats, lambda: unet(x, t, context=context))
    return single / batched


if __name__ == "__main__":
    main()
