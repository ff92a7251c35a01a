"""The extension's own time per denoiser call (everything but the UNet), before and after a change.

    python -m bench.overhead [--before REF] [--rounds 5] [--steps 20]

Each measurement runs in a fresh process on the stand-in WebUI of the host tests whose
extension, ``lib_fusion`` and stand-in come from one tree: this checkout, or ``--before``'s
commit checked out in a temporary git worktree. Per denoiser call it times the CFG
denoiser's ``forward`` and, inside it, every model call (the sampler's model wrapper with its
UNet; CPU time, one thread); their difference is the work around the models: the host's CFG
denoiser (a small, fixed part) and the fusion (rows, guidance, saliency, masks, views, fusion
weights). The tiny UNet keeps that work visible.
Two cases: an SNB step fused at every step (512x512, batch 2) and a Regions step (two
regions and the background over a 512x1024 canvas, window 64, stride 16: five views).
The two trees run in turn, round after round, and the figures are the median (min, max)
of the paired ratios before / after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "SNB step": ({"enabled": True, "model": "expert", "prompt": "a cartoon lion", "fusion_selection": "0,1,1", "mode": 2}, 512, 512),
    "Regions step": (
        {
            "enabled": True,
            "model": "expert",
            "method": "regions",
            "bootstrapping": 0.0,
            "window": 64,
            "stride": 16,
            "regions": [{"box": [0, 0, 0.5, 1], "prompt": "a crown", "model": "fusion"}, {"box": [0.5, 0.5, 0.5, 0.5], "prompt": "a cat"}],
        },
        1024,
        512,
    ),
}


def measure(tree: Path, steps: int) -> dict[str, float]:
    """Median non-UNet CPU seconds per denoiser call of each case, with ``tree``'s code."""
    import torch

    sys.path[:0] = [str(tree), str(tree / "tests" / "host" / "fake_webui")]
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    from modules import sd_samplers_cfg_denoiser, sd_samplers_kdiffusion
    from standin import WebUI

    unet_seconds = [0.0]
    model_class = sd_samplers_kdiffusion.CompVisDenoiser  # the sampler's model wrapper (scalings, sigma -> t) around each UNet
    unet_forward = model_class.forward

    depth = [0]

    def timed_unet(self, x, *args, **kwargs):
        depth[0] += 1  # time the outer call only
        start = time.process_time()
        try:
            return unet_forward(self, x, *args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                unet_seconds[0] += time.process_time() - start

    calls: list[float] = []
    denoiser_forward = sd_samplers_cfg_denoiser.CFGDenoiser.forward

    def timed_denoiser(self, *args, **kwargs):
        unet_seconds[0] = 0.0
        start = time.process_time()
        out = denoiser_forward(self, *args, **kwargs)
        calls.append(time.process_time() - start - unet_seconds[0])
        return out

    host = WebUI(Path(tempfile.mkdtemp(prefix="model-fusion-overhead-")), extra_checkpoints=False)
    model_class.forward = timed_unet
    sd_samplers_cfg_denoiser.CFGDenoiser.forward = timed_denoiser
    result = {}
    for name, (fusion, width, height) in CASES.items():
        host.latents(fusion, steps=2, width=width, height=height, batch_size=2)  # warm-up
        calls.clear()
        host.latents(fusion, steps=steps, width=width, height=height, batch_size=2)
        result[name] = statistics.median(calls[1:])  # the first call of a pass lays it out
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="a commit to compare with (git ref)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--measure", metavar="TREE", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(Path(options.measure), options.steps)))
        return
    trees = {"after": ROOT}
    worktree = None
    if options.before:
        worktree = Path(tempfile.mkdtemp(prefix="model-fusion-before-")) / "tree"
        add = ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), options.before]
        subprocess.run(add, check=True, capture_output=True)
        trees = {"before": worktree, "after": ROOT}
    try:
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(options.rounds):
            for name, tree in trees.items():
                command = [sys.executable, "-m", "bench.overhead", "--measure", str(tree), "--steps", str(options.steps)]
                out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
                figures[name].append(json.loads(out.strip().splitlines()[-1]))
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False, capture_output=True)
    import platform

    import torch

    print(f"machine: {platform.machine()}, torch {torch.__version__}, 1 thread, CPU time; {options.rounds} interleaved rounds")
    for case in CASES:
        line = ", ".join(f"{name} {statistics.median(f[case] for f in figures[name]) * 1000:.2f} ms" for name in trees)
        if options.before:
            paired = [b[case] / a[case] for b, a in zip(figures["before"], figures["after"])]
            line += f"; before / after: median {statistics.median(paired):.2f} (min {min(paired):.2f}, max {max(paired):.2f})"
        print(f"{case}, time beside the models per denoiser call: {line}")


if __name__ == "__main__":
    main()
