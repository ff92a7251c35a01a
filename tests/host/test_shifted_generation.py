"""Shifted windows (SpotDiffusion) and ``stride: auto`` through the stand-in WebUI and the real script.

The reference is SpotDiffusion's loop written out again here without a line of ``lib_fusion``:
per step, shift the tiling by a random offset, run the model on each non-overlapping tile,
and put the tiles back. Along a wrapping axis the shift is a roll of the latent (the
official code); along any other axis the edge tiles are moved inside the canvas and the
overlap is averaged. The offsets are the extension's seeded draw, restated below.
"""

import random

import pytest
import torch
from modules import processing, script_callbacks, shared

from lib_fusion.arguments import infotext
from lib_fusion.arguments.infotext import from_infotext

CFG, PROMPT, NEGATIVE, WINDOW = 7.0, "a wide valley at dawn", "blurry", 8


def shift(seed, step, window):
    """The extension's draw of a step's (rows, columns) offset, from the image's seed and step index."""
    draw = random.Random((seed * 1_000_033 + step * 7919 + 17) % 2**63)
    return [draw.randrange(window), draw.randrange(window)]


def tile_starts(size, window, offset):
    """Clamped tiling of one axis: the cells ``offset + k window`` moved inside the canvas."""
    if size <= window:
        return [0]
    starts = []
    for start in range(offset - window, size, window):
        if start + window > 0:
            start = min(max(start, 0), size - window)
            if start not in starts:
                starts.append(start)
    return starts


def eps(unet, x, t, cond, uncond):
    """CFG eps of one tile, as the WebUI combines it."""
    k, u = unet(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([cond, uncond])).chunk(2)
    return u + (k - u) * CFG


def spot_circular(unet, x, t, cond, uncond, dx):
    """One image, one row of tiles, wrapping: roll, tile, denoise, roll back (official SpotDiffusion)."""
    rolled = x.roll(-dx, dims=-1)
    tiles = [eps(unet, rolled[..., left : left + WINDOW], t, cond, uncond) for left in range(0, x.shape[-1], WINDOW)]
    return torch.cat(tiles, dim=-1).roll(dx, dims=-1)


def spot_clamped(unet, x, t, cond, uncond, dy, dx):
    """One image, clamped tiles on both axes; each pixel the mean of the tiles over it, summed row-major."""
    total, count = torch.zeros_like(x), torch.zeros_like(x)
    for top in tile_starts(x.shape[-2], WINDOW, dy):
        for left in tile_starts(x.shape[-1], WINDOW, dx):
            count[..., top : top + WINDOW, left : left + WINDOW] += 1
    for top in tile_starts(x.shape[-2], WINDOW, dy):
        for left in tile_starts(x.shape[-1], WINDOW, dx):
            tile = eps(unet, x[..., top : top + WINDOW, left : left + WINDOW], t, cond, uncond)
            total[..., top : top + WINDOW, left : left + WINDOW] += tile * (1 / count[..., top : top + WINDOW, left : left + WINDOW])
    return total


class Calls:
    """Each DDIM call's x_t and timestep (``on_cfg_denoiser``) and its CFG result (``on_cfg_after_cfg``)."""

    def __init__(self):
        self.x, self.t, self.out = [], [], []

    def denoiser(self, params):
        self.x.append(params.x.detach().clone())
        self.t.append(params.sigma.detach().clone())

    def after(self, params):
        self.out.append(params.x.detach().clone())

    def __enter__(self):
        script_callbacks.on_cfg_denoiser(self.denoiser)
        script_callbacks.on_cfg_after_cfg(self.after)
        return self

    def __exit__(self, *exc):
        script_callbacks.remove_callbacks_for_function(self.denoiser)
        script_callbacks.remove_callbacks_for_function(self.after)


def encode(texts):
    with torch.no_grad():
        return shared.sd_model.get_learned_conditioning(texts)


def shifted(**overrides):
    return {"enabled": True, "method": "regions", "windows": "shifted", "window": WINDOW, "bootstrapping": 0.0, **overrides}


@pytest.mark.a1111_only("the restated DDIM loop")
@pytest.mark.parametrize(("circular", "height"), [(True, 64), (False, 136)])
def test_every_ddim_call_is_spotdiffusions_step_bit_for_bit(webui, circular, height):
    """Given the WebUI's own x_t, every call's prediction is SpotDiffusion's: a panorama that
    wraps (the official roll), and a canvas of 17x32 latent pixels whose edge tiles are clamped
    (overlaps of 2 or 4 tiles: their mean is exact in floating point)."""
    steps, seeds = 6, [11, 12]
    with Calls() as calls:
        webui.latents(
            shifted(circular=circular), prompt=PROMPT, negative_prompt=NEGATIVE, sampler_name="DDIM", steps=steps,
            cfg_scale=CFG, batch_size=2, seed=seeds[0], width=256, height=height,
        )  # fmt: skip
    unet = webui.unet()
    cond, uncond = encode([PROMPT]), encode([NEGATIVE])
    assert len(calls.out) == len(calls.x) >= steps - 1
    for step, (x_in, t_in, out) in enumerate(zip(calls.x, calls.t, calls.out)):
        for image, seed in enumerate(seeds):
            x, t = x_in[-2:][image : image + 1], t_in[-2:][image : image + 1]
            dy, dx = shift(seed, step, WINDOW)
            with torch.no_grad():
                reference = spot_circular(unet, x, t, cond, uncond, dx) if circular else spot_clamped(unet, x, t, cond, uncond, dy, dx)
            assert torch.equal(out[image : image + 1], reference), f"call {step}, image {image}"


def test_a_panorama_runs_a_quarter_of_the_views_of_multidiffusion(webui):
    fusion = shifted(circular=True)
    p = webui.processing(fusion, steps=3, width=512, height=64)  # latent 8 x 64: eight windows of 8 per step
    out = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.region_passes == 3 * 8
    overlap = webui.processing({**fusion, "windows": "overlap", "stride": 4}, steps=3, width=512, height=64)
    processing.process_images(overlap)
    assert overlap.model_fusion_run.stats.region_passes == 3 * 16
    assert torch.isfinite(out).all()


def test_shifted_regions_keep_batches_and_view_batches_invariant(webui):
    """Each image draws its shifts from its own seed: batch 3 equals each seed alone, and
    the view batch size changes the calls, never the image; bootstrapping included."""
    fusion = shifted(regions=[{"box": [0.1, 0.0, 0.4, 1.0], "prompt": "a crown", "model": "fusion"}], bootstrapping=0.5, model="expert")
    together = webui.latents(fusion, steps=4, batch_size=3, seed=21, width=256, height=64)
    for i in range(3):
        assert torch.equal(together[i], webui.latents(fusion, steps=4, batch_size=1, seed=21 + i, width=256, height=64)[0])
    assert torch.equal(together[:1], webui.latents({**fusion, "view_batch_size": 1}, steps=4, seed=21, width=256, height=64))
    plain = webui.latents(fusion, steps=4, seed=21, width=256, height=64, extension=False)
    assert not torch.allclose(together[:1], plain, atol=1e-3)


def test_shifts_move_every_step_and_differ_between_seeds():
    draws = {(seed, step): tuple(shift(seed, step, 64)) for seed in (1, 2) for step in range(10)}
    assert len(set(draws.values())) >= 18


def test_auto_stride_is_written_beside_auto_and_pastes_back_as_auto(webui):
    from modules import infotext_utils

    fusion = {"enabled": True, "method": "regions", "window": 8, "stride": "auto", "bootstrapping": 0.0}
    p = webui.processing(fusion, steps=2, width=256, height=64, enable_hr=True, hr_scale=1.5)
    processing.process_images(p)
    text = processing.create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds)
    params = infotext_utils.parse_generation_parameters(text)
    assert params["Fusion stride"] == "auto"
    assert params[infotext.STRIDE_USED] == "4"  # 8 x 32 then 12 x 48 latent pixels: half the window both times
    assert p.model_fusion_run.stats.latent_sizes == [(8, 32), (12, 48)]
    restored = from_infotext(params)
    assert (restored.stride, restored.windows) == ("auto", "overlap")


def test_shifted_windows_write_and_read_their_infotext(webui):
    from modules import infotext_utils

    p = webui.processing(shifted(circular=True), steps=2, width=256, height=64)
    processing.process_images(p)
    params = infotext_utils.parse_generation_parameters(processing.create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds))
    assert params["Fusion windows"] == "shifted" and infotext.STRIDE_USED not in params
    assert from_infotext(params).windows == "shifted"
