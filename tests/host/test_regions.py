"""Region MultiDiffusion and panoramas through the stand-in WebUI and the real script."""

import base64
import io

import pytest
import torch
from modules import processing, shared
from PIL import Image

LEFT = [0.0, 0.0, 0.5, 1.0]
RIGHT = [0.5, 0.0, 0.5, 1.0]


def regions(*items, **overrides):
    args = {"enabled": True, "model": "expert", "method": "regions", "regions": list(items), "bootstrapping": 0.0}
    args.update(overrides)
    return args


def run(webui, fusion, **kwargs):
    p = webui.processing(fusion, **kwargs)
    return torch.stack(processing.process_images(p).latents), p


def png_mask(width, height, box):
    image = Image.new("L", (width, height), 0)
    image.paste(255, box)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_each_region_carries_its_models_signature(webui):
    """One Euler step from sigma_max to 0 returns the fused x0 itself: inside each box it
    must be exactly what that box's checkpoint predicts alone (with its own text encoder)."""
    fusion = regions({"box": LEFT, "model": "fusion"}, {"box": RIGHT, "model": "active"}, text_encoder="own")
    fused, p = run(webui, fusion, steps=1, width=128, height=64)
    general = webui.latents(None, extension=False, steps=1, width=128, height=64)
    webui.load("expert")
    expert = webui.latents(None, extension=False, steps=1, width=128, height=64)
    half = fused.shape[-1] // 2
    assert torch.allclose(fused[..., :half], expert[..., :half], atol=1e-5)
    assert torch.allclose(fused[..., half:], general[..., half:], atol=1e-5)
    assert not torch.allclose(expert[..., :half], general[..., :half], atol=1e-3)
    stats = p.model_fusion_run.stats
    assert stats.region_passes == 2 and stats.active_runs == stats.fusion_runs == 1  # the background mask is empty


def test_many_steps_stay_closer_to_each_regions_model(webui):
    fusion = regions({"box": LEFT, "model": "fusion", "prompt": "a lion"}, {"box": RIGHT, "model": "active"}, text_encoder="own")
    fused, _ = run(webui, fusion, steps=6, width=128, height=64)
    general = webui.latents(None, extension=False, steps=6, width=128, height=64)
    webui.load("expert")
    expert = webui.latents(None, extension=False, steps=6, width=128, height=64, prompt="a lion")
    half = fused.shape[-1] // 2

    def distance(a, b):
        return (a - b).abs().mean().item()

    assert distance(fused[..., :half], expert[..., :half]) < distance(fused[..., :half], general[..., :half])
    assert distance(fused[..., half:], general[..., half:]) < distance(fused[..., half:], expert[..., half:])


@pytest.mark.parametrize("fields", [{}, {"background": "fusion"}, {"circular": True, "regions": [{"box": [0, 0, 0.5, 1]}]}])
def test_regions_that_cannot_change_a_one_window_canvas_are_refused_before_anything_loads(webui, fields):
    """No region on a canvas one window wide is one checkpoint alone; circular there has no
    window crossing the edge: both refused, nothing loaded, and the next plain image is the same."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    plain = webui.latents(None, extension=False, batch_size=2)
    loads = CACHE.loads
    with pytest.raises(ValueError, match="^Model Fusion: (Regions with no region|circular wraps)"):
        webui.generate(regions(**fields), batch_size=2)
    assert CACHE.loads == loads
    assert torch.equal(webui.latents(None, extension=False, batch_size=2), plain)


@pytest.mark.parametrize("bootstrapping, expected_steps", [(0.0, 0), (0.4, 4)])
def test_bootstrapping_runs_for_its_fraction_of_the_steps(webui, bootstrapping, expected_steps):
    fusion = regions({"box": [0.25, 0.25, 0.5, 0.5], "prompt": "a crown"}, bootstrapping=bootstrapping)
    out, p = run(webui, fusion, steps=10)
    assert p.model_fusion_run.stats.bootstrapped_steps == expected_steps
    assert torch.isfinite(out).all()


def test_bootstrapping_changes_the_region_and_keeps_batches_invariant(webui):
    fusion = regions({"box": [0.25, 0.25, 0.5, 0.5], "prompt": "a crown"}, bootstrapping=0.4)
    with_bootstrap = webui.latents(fusion, steps=10, batch_size=3, seed=5)
    without = webui.latents({**fusion, "bootstrapping": 0.0}, steps=10, batch_size=3, seed=5)
    assert not torch.allclose(with_bootstrap, without, atol=1e-4)
    for i in range(3):
        alone = webui.latents(fusion, steps=10, batch_size=1, seed=5 + i)
        assert torch.equal(with_bootstrap[i], alone[0])


def test_panorama_8_to_1_covers_every_pixel_with_windows(webui):
    fusion = regions(window=8, stride=4)
    out, p = run(webui, fusion, steps=3, width=520, height=64)  # latent 8 x 65: not a multiple of the stride
    stats = p.model_fusion_run.stats
    views = (65 - 8) // 4 + 2  # the last one flush with the right edge
    assert stats.region_passes == 3 * views
    assert stats.region_calls == 3 * -(-views // 4)
    assert out.shape[-1] == 65 and torch.isfinite(out).all()
    plain = webui.latents(None, extension=False, steps=3, width=520, height=64)
    assert not torch.allclose(out, plain, atol=1e-3)


def test_view_batch_size_changes_calls_not_the_image(webui):
    fusion = regions({"box": [0.0, 0.0, 0.3, 1.0], "prompt": "a crown"}, window=8, stride=4, bootstrapping=0.4)
    one, p_one = run(webui, {**fusion, "view_batch_size": 1}, steps=3, width=256, height=64)
    many, p_many = run(webui, {**fusion, "view_batch_size": 8}, steps=3, width=256, height=64)
    assert torch.equal(one, many)
    assert p_one.model_fusion_run.stats.region_passes == p_many.model_fusion_run.stats.region_passes
    assert p_one.model_fusion_run.stats.region_calls > p_many.model_fusion_run.stats.region_calls


def test_circular_panorama_wraps_its_views(webui):
    out, p = run(webui, regions(window=8, stride=4, circular=True), steps=2, width=256, height=64)
    assert p.model_fusion_run.stats.region_passes == 2 * (32 // 4)
    assert torch.isfinite(out).all()
    flat = webui.latents(regions(window=8, stride=4), steps=2, width=256, height=64)
    assert not torch.allclose(out, flat, atol=1e-4)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM"])
def test_regions_and_panorama_with_other_samplers_and_hires(webui, sampler):
    fusion = regions({"box": RIGHT, "prompt": "a crown"}, {"box": [0.0, 0.5, 0.5, 0.5], "model": "active"}, window=8, stride=4)
    p = webui.processing(fusion, sampler_name=sampler, steps=4, width=128, height=64, enable_hr=True, hr_scale=1.5)
    out = torch.stack(processing.process_images(p).latents)
    assert out.shape[-2:] == (12, 24) and torch.isfinite(out).all()
    assert p.model_fusion_run.stats.latent_sizes == [(8, 16), (12, 24)]  # boxes are fractions: they scale with the canvas


def test_the_fusion_weights_are_made_once_per_pass_not_every_step(webui, monkeypatch):
    from lib_fusion.fusion import multidiffusion as md

    made = []
    original = md.normalised_weights
    monkeypatch.setattr(md, "normalised_weights", lambda *args, **kwargs: made.append(args) or original(*args, **kwargs))
    fusion = regions({"box": RIGHT, "prompt": "a crown"}, window=8, stride=4, bootstrapping=0.5)
    p = webui.processing(fusion, steps=4, width=128, height=64, enable_hr=True, hr_scale=1.5)
    processing.process_images(p)
    assert p.model_fusion_run.stats.latent_sizes == [(8, 16), (12, 24)]
    assert len(made) == 2  # eight steps over two passes


def test_img2img_and_inpainting_with_regions(webui):
    init = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    fusion = regions({"box": RIGHT, "prompt": "a crown"})  # inside the painted (right) half
    out = webui.latents(fusion, img2img=True, init_latent=init, mask=mask, steps=6)
    plain = webui.latents(None, extension=False, img2img=True, init_latent=init, mask=mask, steps=6)
    assert not torch.allclose(out[..., 4:], plain[..., 4:], atol=1e-4)
    assert torch.equal(out[..., :4], plain[..., :4])  # the kept half stays the original
    whole = webui.latents(regions({"box": LEFT, "prompt": "a crown"}), img2img=True, init_latent=init, steps=6)
    assert not torch.allclose(whole, webui.latents(None, extension=False, img2img=True, init_latent=init, steps=6), atol=1e-4)


def test_mask_regions(webui):
    mask = png_mask(64, 64, (0, 0, 32, 64))
    boxed = webui.latents(regions({"box": LEFT, "prompt": "a crown"}), steps=3)
    masked = webui.latents(regions({"mask": mask, "prompt": "a crown"}), steps=3)
    assert torch.allclose(boxed, masked, atol=1e-6)


def test_regions_write_and_read_their_infotext(webui):
    from modules import infotext_utils

    from lib_fusion.arguments.infotext import from_infotext

    fusion = regions({"box": LEFT, "prompt": "a cat, sitting", "weight": 1.5}, {"box": RIGHT, "model": "active"}, window=8, circular=True)
    _, p = run(webui, fusion, steps=2, width=128, height=64)
    infotext = processing.create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds)
    restored = from_infotext(infotext_utils.parse_generation_parameters(infotext))
    assert restored.regions == p.model_fusion_run.args.regions
    assert (restored.window, restored.circular, restored.method) == (8, True, "regions")


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "DDIM"])
def test_samplers_with_history_step_the_fused_prediction_exactly(webui, sampler):
    """A full-canvas region of the active checkpoint with the main prompt goes through the
    regions path (one view, one pass) and must give the plain image: the sampler's own
    history (DPM++ 2M's previous x0) sees the same predictions."""
    fusion = regions({"box": [0.0, 0.0, 1.0, 1.0], "model": "active"})
    out, p = run(webui, fusion, sampler_name=sampler, steps=6, batch_size=2)
    assert p.model_fusion_run.stats.region_passes > 0 and p.model_fusion_run.stats.passthrough_steps == 0
    plain = webui.latents(None, extension=False, sampler_name=sampler, steps=6, batch_size=2)
    assert torch.allclose(out, plain, atol=1e-5)


@pytest.mark.parametrize("windows", ["overlap", "shifted"])
def test_a_region_prompt_longer_than_its_negative_runs_in_two_calls(webui, windows):
    """A prompt of two 75-token chunks against a one-chunk negative: the text rows cannot be
    joined in one batch, so each side gets its own call (as the WebUI does)."""
    long_prompt = " ".join(["a golden crown on a velvet cushion"] * 15)
    fusion = regions({"box": RIGHT, "prompt": long_prompt}, window=8, stride=4, windows=windows)
    out, p = run(webui, fusion, steps=2, width=128, height=64)
    assert torch.isfinite(out).all() and p.model_fusion_run.stats.region_passes > 0
    main = webui.latents(regions({"box": RIGHT}, window=8, stride=4, windows=windows), steps=2, width=128, height=64)
    assert not torch.allclose(out, main, atol=1e-4)


def test_three_boxes_on_three_checkpoints_each_carry_their_models_signature(webui):
    """Any listed checkpoint denoises a region: three thirds on the fusion checkpoint, another
    checkpoint named by title and the active one. One Euler step returns the fused x0 itself,
    so each third is exactly its checkpoint alone (with its own text encoder)."""
    shared.opts.model_fusion_max_models = 2  # the fusion checkpoint and the other one
    thirds = [[k / 3, 0.0, 1 / 3, 1.0] for k in range(3)]
    artist = webui.title("artist")
    fusion = regions(
        {"box": thirds[0], "model": "fusion"},
        {"box": thirds[1], "model": "artist"},
        {"box": thirds[2], "model": "active"},
        text_encoder="own",
    )
    kwargs = {"steps": 1, "width": 192, "height": 64}
    fused, p = run(webui, fusion, **kwargs)
    assert [region.model for region in p.model_fusion_run.args.regions] == ["fusion", artist, "active"]  # resolved to its title
    assert p.model_fusion_run.stats.region_model_runs == {artist: 1}
    alone = {"general": webui.latents(None, extension=False, **kwargs)}
    for name in ("expert", "artist"):
        webui.load(name)
        alone[name] = webui.latents(None, extension=False, **kwargs)
    third = fused.shape[-1] // 3
    for k, name in enumerate(("expert", "artist", "general")):
        part = slice(k * third, (k + 1) * third)
        assert torch.allclose(fused[..., part], alone[name][..., part], atol=1e-5), name
        others = [other for other in alone if other != name]
        assert all(not torch.allclose(alone[other][..., part], alone[name][..., part], atol=1e-3) for other in others)


def test_the_background_takes_a_checkpoint_of_its_own(webui):
    """One region on the active checkpoint (left), the background on another one named by
    title (right): one Euler step shows each half's checkpoint alone."""
    fusion = {"enabled": True, "method": "regions", "regions": [{"box": LEFT, "model": "active"}], "background": "artist",
              "bootstrapping": 0.0, "text_encoder": "own"}  # fmt: skip
    kwargs = {"steps": 1, "width": 128, "height": 64}
    fused, p = run(webui, fusion, **kwargs)
    artist = webui.title("artist")
    assert p.model_fusion_run.args.background == artist and p.model_fusion_run.stats.region_model_runs == {artist: 1}
    general = webui.latents(None, extension=False, **kwargs)
    webui.load("artist")
    alone = webui.latents(None, extension=False, **kwargs)
    half = fused.shape[-1] // 2
    assert torch.allclose(fused[..., :half], general[..., :half], atol=1e-5)
    assert torch.allclose(fused[..., half:], alone[..., half:], atol=1e-5)
