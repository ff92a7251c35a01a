"""Command-line client for a running WebUI (``--api``), in the spirit of MagicFusion's
``scripts/stable_txt2img.py``: one seed, three images — A alone, B alone, fused.

    python -m lib_fusion.cli --url http://127.0.0.1:7860 --model0 general --model1 cartoon \
        --prompt "A lion with a crown on his head" --fusion_selection 600,1,1 --mode 2 --outdir out/

``--model0`` is the active checkpoint (loaded for the request through
``override_settings``); ``--model1`` is the fusion checkpoint. ``--prompt`` goes to model0
and ``--prompt1`` (default: the same) to model1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

import requests

from lib_fusion.arguments.args import FusionArgs, FusionArgumentError

OUTPUTS = {"model0_alone": "active", "model1_alone": "fusion", "fused": None}
"""Output folder -> which model runs alone (None: the fusion itself)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib_fusion.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="WebUI address (started with --api)")
    parser.add_argument("--model0", required=True, help="active checkpoint (title, name or hash)")
    parser.add_argument("--model1", required=True, help="fusion checkpoint (title, name or hash)")
    parser.add_argument("--prompt", required=True, help="model0's prompt")
    parser.add_argument("--prompt1", default="", help="model1's prompt (default: --prompt)")
    parser.add_argument("--negative_prompt", default="")
    parser.add_argument("--fusion_selection", default="600,1,1", help="v1,kg,ke")
    parser.add_argument("--mode", type=int, default=2, choices=[0, 1, 2])
    parser.add_argument("--solo", default="active", choices=["active", "fusion"], help="which model runs alone outside the window")
    parser.add_argument("--sampler", default="DDIM")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg_scale", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--outdir", type=Path, default=Path("outputs/model-fusion"))
    parser.add_argument("--timeout", type=float, default=3600.0)
    return parser


def requests_for(options: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The three txt2img payloads (validated before anything is sent)."""
    fused = FusionArgs.parse(
        {
            "enabled": True,
            "model": options.model1,
            "prompt": options.prompt1,
            "solo": options.solo,
            "fusion_selection": options.fusion_selection,
            "mode": options.mode,
        }
    )
    base = {
        "prompt": options.prompt,
        "negative_prompt": options.negative_prompt,
        "sampler_name": options.sampler,
        "steps": options.steps,
        "cfg_scale": options.cfg_scale,
        "width": options.width,
        "height": options.height,
        "batch_size": options.batch_size,
        "seed": options.seed,
        "override_settings": {"sd_model_checkpoint": options.model0},
        "override_settings_restore_afterwards": True,
    }
    payloads = {}
    for folder, solo in OUTPUTS.items():
        args = fused if solo is None else fused.copy(update={"mode": 0, "solo": solo})
        payloads[folder] = {**base, "alwayson_scripts": {"model fusion": {"args": [args.dict()]}}}
    return payloads


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        payloads = requests_for(options)
    except FusionArgumentError as error:
        print(error, file=sys.stderr)
        return 2
    for folder, payload in payloads.items():
        response = requests.post(f"{options.url.rstrip('/')}/sdapi/v1/txt2img", json=payload, timeout=options.timeout)
        if response.status_code != 200:
            print(f"{folder}: HTTP {response.status_code}: {_error_text(response)}", file=sys.stderr)
            return 1
        images = response.json()["images"]
        target = options.outdir / folder
        target.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            (target / f"{options.seed}_{index:02d}.png").write_bytes(base64.b64decode(image))
        print(f"{folder}: {len(images)} image(s) in {target}")
    return 0


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except json.JSONDecodeError:
        return response.text[:500]
    return str(body.get("errors") or body.get("detail") or body)[:500]


if __name__ == "__main__":
    raise SystemExit(main())
