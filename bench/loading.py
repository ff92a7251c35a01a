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

With ``--url`` it does the same through a running WebUI's API: the fusion load as
``GET /model-fusion/v1/models`` reports it after ``POST /model-fusion/v1/unload`` and a
fused generation (and that a second generation loads nothing), against the WebUI loading
``--model`` into a new model slot (``sd_checkpoints_limit`` 2, restored after).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import warnings
from typing import Any

import torch

from bench import api
from bench.standin import add_device_options, from_options, interleaved, machine, ratios, spread, timed, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=96, help="UNet width (stand-in)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", help="a running WebUI started with --api")
    parser.add_argument("--model", default="expert", help="the fusion checkpoint")
    parser.add_argument("--active", default="general", help="the active checkpoint (--url)")
    add_device_options(parser)
    options = parser.parse_args()
    if options.url:
        through_api(options.url.rstrip("/"), options.model, options.active, options.repeats)
    else:
        in_process(options)


def in_process(options: argparse.Namespace) -> None:
    from modules import shared

    from lib_fusion import host as fusion_host
    from lib_fusion.engine.checkpoint_cache import CACHE

    standin = from_options(options)
    repeats = options.repeats
    info = fusion_host.resolve_checkpoint("expert")

    def fusion_load() -> float:
        """The fusion checkpoint's first load, timed (freeing the one held before is not)."""
        CACHE.unload()
        return timed(lambda: fusion_host.load_fusion_model(info, need_text_encoder=False))[0]

    def webui_load() -> float:
        """The WebUI loading the same file as its active checkpoint, timed; then back to the
        general one (untimed), so the next fusion load is a real one."""
        seconds = timed(lambda: standin.load("expert"))[0]
        standin.load("general")
        return seconds

    loads = interleaved(repeats, {"ours": fusion_load, "theirs": webui_load})
    standin.load("general")
    fusion_load()
    cached = min(timed(lambda: fusion_host.load_fusion_model(info, need_text_encoder=False))[0] for _ in range(repeats))

    print(f"machine: {machine()}")
    print(f"stand-in WebUI, {unet_name(options)}, {repeats} interleaved rounds")
    ours, theirs = statistics.median(loads["ours"]), statistics.median(loads["theirs"])
    print(f"first load of the fusion checkpoint {ours * 1e3:.0f} ms; the WebUI's own load of it {theirs * 1e3:.0f} ms (medians)")
    print(f"first load / WebUI load: {spread(ratios(loads['ours'], loads['theirs']))} (target <= 1.1)")
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
    with warnings.catch_warnings():  # isinstance on some module proxies warns of deprecated names
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and not obj.is_meta:
                    storage = obj.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
            except Exception:  # objects whose isinstance check itself fails
                continue
    return sum(storages.values())


def through_api(url: str, model: str, active: str, repeats: int) -> None:
    def call(path: str, body: dict[str, Any] | None = None) -> tuple[float, Any]:
        return api.call(url, path, body)

    body = {"prompt": "a lion", "steps": 1, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
    body["alwayson_scripts"] = {"model fusion": {"args": [{"enabled": True, "model": model}]}}
    ours, cached = [], []
    for _ in range(repeats):
        call("/model-fusion/v1/unload", {})
        call("/sdapi/v1/txt2img", body)
        ours.append(call("/model-fusion/v1/models")[1]["loaded"]["load_seconds"])
        call("/sdapi/v1/txt2img", body)
        cached.append(call("/model-fusion/v1/models")[1]["loaded"]["load_seconds"])
    # The WebUI's own load of the same file into a new model (a second model slot, so it
    # builds and fills fresh memory as the fusion load does), then back.
    limit = call("/sdapi/v1/options")[1].get("sd_checkpoints_limit", 1)
    call("/sdapi/v1/options", {"sd_checkpoints_limit": 2})
    theirs, _ = call("/sdapi/v1/options", {"sd_model_checkpoint": model})
    call("/sdapi/v1/options", {"sd_model_checkpoint": active})
    call("/sdapi/v1/options", {"sd_checkpoints_limit": limit})
    print(f"WebUI at {url}: fusion load, {repeats} runs")
    print(f"fusion checkpoint's load: {spread(ours, 2)} s (reported after a second generation: {cached}, i.e. no new load)")
    # One WebUI load only: a second one would come from the WebUI's own model slots.
    print(f"the WebUI loading {model} as a new model: {theirs:.2f} s (once)")
    print(f"first load / WebUI load: {spread([seconds / theirs for seconds in ours])} (target <= 1.1)")


if __name__ == "__main__":
    main()
