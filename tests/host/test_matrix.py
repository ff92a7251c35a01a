"""The WebUI conditions matrix: every sampler x txt2img / hires fix / img2img / inpaint x
SNB / Regions, over batch sizes 1-4 and batch counts 1-3, with AND sub-prompts, prompt
editing, skipped uncond rows (skip early CFG, NGMS) and batch_cond_uncond off mixed in.

In every cell image i of the fused batch equals the same seed generated alone, and every
sampling pass was fused. Cells take the batch shapes and options in turn (a covering
design, not the full product, to keep CI short).
"""

import itertools

import pytest
import torch
from modules import processing, shared

SAMPLERS = ["Euler a", "DPM++ 2M", "DDIM", "UniPC", "LCM"]
KINDS = ["txt2img", "hires", "img2img", "inpaint"]
METHODS = ["snb", "regions"]
SHAPES = [(1, 3), (2, 2), (3, 1), (4, 2), (2, 1), (1, 2)]
"""(batch size, batch count)."""
OPTIONS = [
    {},
    {"batch_cond_uncond": False},
    {"skip_early_cond": 0.3},
    {"s_min_uncond": 4.0},
]
PROMPT = "a lion [in a forest:on a beach:0.5] AND a golden crown:0.6"
CELLS = [
    (sampler, kind, method, SHAPES[n % len(SHAPES)], OPTIONS[n % len(OPTIONS)])
    for n, (sampler, kind, method) in enumerate(itertools.product(SAMPLERS, KINDS, METHODS))
]


def fusion_args(method):
    if method == "snb":
        return {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2, "prompt": "a cartoon lion"}
    boxes = [
        {"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion"},
        {"box": [0.25, 0.5, 0.75, 0.5], "model": "active", "prompt": "a crown"},
    ]
    return {"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "bootstrapping": 0.4, "window": 8, "stride": 4}


def kind_kwargs(kind):
    if kind == "hires":
        return {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.6}
    if kind in ("img2img", "inpaint"):
        init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        mask = None
        if kind == "inpaint":
            mask = torch.zeros(1, 1, 8, 8)
            mask[..., 1:7, 2:6] = 1
        return {"img2img": True, "init_latent": init, "mask": mask, "denoising_strength": 0.8}
    return {}


@pytest.mark.parametrize("sampler, kind, method, shape, options", CELLS, ids=lambda v: str(v))
def test_image_i_of_a_fused_batch_equals_its_seed_alone(webui, sampler, kind, method, shape, options):
    batch_size, batch_count = shape
    s_min_uncond = options.get("s_min_uncond", 0.0)
    for name, value in options.items():
        if name != "s_min_uncond":
            setattr(shared.opts, name, value)
    common = {"sampler_name": sampler, "steps": 5, "prompt": PROMPT, "s_min_uncond": s_min_uncond, **kind_kwargs(kind)}
    p = webui.processing(fusion_args(method), batch_size=batch_size, n_iter=batch_count, seed=20, **common)
    batch = torch.stack(processing.process_images(p).latents)
    assert batch.shape[0] == batch_size * batch_count

    run = p.model_fusion_run
    fused = run.stats.fused_steps if method == "snb" else run.stats.region_passes
    assert fused > 0
    passes_per_batch = 2 if kind == "hires" else 1
    assert run.stats.kinds.count("fused" if method == "snb" else "regions") > 0
    assert len(run.stats.latent_sizes) == (passes_per_batch * batch_count if method == "regions" else 0)

    for i in range(batch_size * batch_count):
        alone = webui.latents(fusion_args(method), batch_size=1, seed=20 + i, **common)
        # Exact: the stand-in UNet runs row by row, so nothing but the batch layout could differ.
        assert torch.equal(batch[i], alone[0]), f"image {i} depends on the batch around it"
