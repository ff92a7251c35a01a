"""Loading the fusion checkpoint: time against the WebUI's own load, the cache, the memory.

    python -m bench.loading [--hidden 96] [--repeats 3]
    python -m bench.loading --url http://127.0.0.1:7860 --model expert --active general

In-process (the stand-in WebUI, random SD1-shaped checkpoints) it prints:

- the first load of the fusion checkpoint against the WebUI's own load of that same file as
  the active checkpoint (target <= 1.1), and what a second generation spends loading (the
  cache: target 0);
- the memory it adds, counted as the bytes of every live tensor before and after a fused
  generation, against the weights it needs: the UNet, plus the text encoder only with
  ``text_encoder: "own"`` (target <= 1.05).

With ``--url`` it times the same through a running WebUI's API: the WebUI switching its
active checkpoint to ``--model`` and back against the first fused generation after
``POST /model-fusion/v1/unload`` minus a second, cached one.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import urllib.request
from typing import Any

import torch

from bench.standin import best_of, machine, webui


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=96, help="UNet width (stand-in)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", help="a running WebUI started with --api")
    parser.add_argument("--model", default="expert", help="the fusion checkpoint")
    parser.add_argument("--active", default="general", help="the active checkpoint (--url)")
    options = parser.parse_args()
    if options.url:
        through_api(options.url.rstrip("/"), options.model, options.active, options.repeats)
    else:
        in_process(options.hidden, options.repeats)


def in_process(hidden: int, repeats: int) -> None:
    from modules import shared

    from lib_fusion import host as fusion_host
    from lib_fusion.models import CACHE

    standin = webui(hidden=hidden)
    info = fusion_host.resolve_checkpoint("expert")

    def fusion_load() -> None:
        CACHE.unload()
        fusion_host.load_fusion_model(info, need_text_encoder=False)

    def webui_load() -> None:
        standin.load("expert")

    ours, _ = best_of(repeats, fusion_load)
    theirs, _ = best_of(repeats, webui_load)
    standin.load("general")
    fusion_load()
    cached, _ = best_of(repeats, lambda: fusion_host.load_fusion_model(info, need_text_encoder=False))

    print(f"machine: {machine()}")
    print(f"stand-in SD1-like UNet, hidden {hidden}, best of {repeats}")
    print(f"first load of the fusion checkpoint {ours * 1e3:.0f} ms; the WebUI's own load of it {theirs * 1e3:.0f} ms")
    print(f"first load / WebUI load: {ours / theirs:.3f} (target <= 1.1)")
    print(f"second generation's load: {cached * 1e6:.0f} us (the cache; target: none)")
    unet = _bytes(shared.sd_model.model.diffusion_model)
    encoder = _bytes(shared.sd_model.cond_stage_model)
    for text_encoder, needed in (("solo", unet), ("own", unet + encoder)):
        CACHE.unload()
        fusion = {"enabled": True, "model": "expert", "text_encoder": text_encoder}
        standin.latents(None, extension=False, steps=1, width=64, height=64)
        before = _live_bytes()
        standin.latents(fusion, steps=2, width=64, height=64)
        added = _live_bytes() - before
        print(
            f"text_encoder {text_encoder}: memory added {added / 2**20:.2f} MiB for {needed / 2**20:.2f} MiB of weights "
            f"-> {added / needed:.3f} (target <= 1.05)"
        )


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _live_bytes() -> int:
    """Bytes of every tensor storage alive in the process (each storage once)."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and not obj.is_meta:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        except Exception:  # objects whose isinstance check itself fails
            continue
    return sum(storages.values())


def through_api(url: str, model: str, active: str, repeats: int) -> None:
    def call(path: str, body: dict[str, Any] | None = None) -> float:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
        start = time.perf_counter()
        urllib.request.urlopen(request, timeout=3600).read()
        return time.perf_counter() - start

    def generate(fusion: dict[str, Any] | None) -> float:
        body = {"prompt": "a lion", "steps": 1, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
        if fusion is not None:
            body["alwayson_scripts"] = {"model fusion": {"args": [fusion]}}
        return call("/sdapi/v1/txt2img", body)

    fusion = {"enabled": True, "model": model}
    ours, theirs = [], []
    for _ in range(repeats):
        call("/model-fusion/v1/unload", {})
        first = generate(fusion)
        again = generate(fusion)
        ours.append(first - again)
        theirs.append(call("/sdapi/v1/options", {"sd_model_checkpoint": model}))
        call("/sdapi/v1/options", {"sd_model_checkpoint": active})
    print(f"WebUI at {url}: best of {repeats}")
    print(f"first fused generation minus a cached one: {min(ours):.2f} s; the WebUI switching to {model}: {min(theirs):.2f} s")
    print(f"first load / WebUI load: {min(ours) / min(theirs):.3f} (target <= 1.1)")


if __name__ == "__main__":
    main()
