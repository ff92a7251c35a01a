"""The README's pictures, made by the extension itself: through a running WebUI's API
(``--url``), or else through the stand-in WebUI of the tests (random SD1-shaped
checkpoints and a linear stand-in VAE, so its images are colour noise).

    python docs/readme_pictures.py [--url http://127.0.0.1:7860 --model expert]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def requests(model: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """txt2img bodies, each with the outputs to keep (label -> file): SNB with the comparison
    and previews, Regions with the layout, cross-model guidance with its comparison and map,
    base uncond with its comparison."""
    snb = {"enabled": True, "model": model, "fusion_selection": "800,1,1", "mode": 1, "compare": True, "preview": True}
    regions = {
        "enabled": True,
        "model": model,
        "method": "regions",
        "preview": True,
        "bootstrapping": 0.0,
        "regions": [
            {"box": [0.05, 0.2, 0.35, 0.7], "prompt": "a cartoon lion"},
            {"box": [0.55, 0.1, 0.4, 0.8], "prompt": "a stone castle", "model": "active"},
        ],
    }
    window = {"fusion_selection": "1000,1,1", "mode": 1, "compare": True}
    guidance = {"enabled": True, "model": model, "method": "guidance", "guidance_weight": 2.5, "preview": True, **window}
    base_uncond = {"enabled": True, "model": model, "method": "base_uncond", **window}
    common = {"prompt": "a lion with a crown", "negative_prompt": "blurry", "seed": 7, "sampler_name": "Euler a"}
    small = {"width": 96, "height": 96, "steps": 4, "batch_size": 1}
    snb_pictures = {"comparison grid": "compare.png", "saliency and mask preview": "preview.png"}
    guidance_pictures = {"comparison grid": "guidance-compare.png", "guidance preview": "guidance-preview.png"}
    return [
        ({**common, "fusion": snb, "width": 128, "height": 128, "steps": 8, "batch_size": 2}, snb_pictures),
        ({**common, "fusion": regions, "width": 384, "height": 128, "steps": 4, "batch_size": 1}, {"region layout": "regions.png"}),
        ({**common, "fusion": guidance, **small}, guidance_pictures),
        ({**common, "fusion": base_uncond, **small}, {"comparison grid": "base-uncond-compare.png"}),
    ]


def through_api(url: str, body: dict[str, Any]) -> list[tuple[Image.Image, str]]:
    payload = {key: value for key, value in body.items() if key != "fusion"}
    payload["alwayson_scripts"] = {"model fusion": {"args": [body["fusion"]]}}
    request = urllib.request.Request(f"{url}/sdapi/v1/txt2img", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=3600))
    images = [Image.open(io.BytesIO(base64.b64decode(data))) for data in answer["images"]]
    return list(zip(images, json.loads(answer["info"])["infotexts"]))


def through_standin(body: dict[str, Any]) -> list[tuple[Image.Image, str]]:
    sys.path.insert(0, str(ROOT))
    from bench.standin import webui

    global _host
    if "_host" not in globals():
        _host = webui(hidden=32)
    kwargs = {key: value for key, value in body.items() if key not in ("fusion", "sampler_name")}
    processed = _host.generate(body["fusion"], **kwargs)
    return list(zip(processed.images, processed.infotexts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running WebUI started with --api (default: the stand-in)")
    parser.add_argument("--model", default="expert", help="the fusion checkpoint")
    parser.add_argument("--only", help="make only the pictures whose file names contain this")
    options = parser.parse_args()
    for body, wanted in requests(options.model):
        wanted = {label: name for label, name in wanted.items() if not options.only or options.only in name}
        if not wanted:
            continue
        outputs = through_api(options.url.rstrip("/"), body) if options.url else through_standin(body)
        for image, text in outputs:
            found = re.search(r'Fusion output: "?([^",]+)', text)
            name = wanted.pop(found.group(1), None) if found else None  # the first of each kind
            if name is not None:
                image.save(ROOT / "docs" / name, optimize=True)
                print(f"docs/{name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
