"""Comparison and previews: what they add to the WebUI's output, and that each picture is
what its label says (A alone is the plain generation, the grid holds the three)."""

import numpy as np
import pytest
import torch
from modules import images, infotext_utils, processing, script_callbacks, shared
from PIL import Image

from lib_fusion.arguments.infotext import from_infotext

W, H = 96, 64


def snb(**overrides):
    args = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2}
    return {**args, **overrides}


def regions(*items, **overrides):
    args = {"enabled": True, "model": "expert", "method": "regions", "regions": list(items), "bootstrapping": 0.0}
    return {**args, **overrides}


def generate(webui, fusion, **kwargs):
    kwargs = {"width": W, "height": H, "steps": 6, **kwargs}
    p = webui.processing(fusion, **kwargs)
    return processing.process_images(p), p


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def label(infotext):
    return infotext_utils.parse_generation_parameters(infotext).get("Fusion output")


def test_comparison_adds_each_model_alone_and_a_labelled_grid(webui):
    fusion = snb(compare=True, text_encoder="own", prompt="a cartoon lion")
    processed, p = generate(webui, fusion, batch_size=2)
    general, expert = webui.title("general"), webui.title("expert")
    assert len(processed.images) == len(processed.infotexts) == 2 + 2 + 2 + 1
    assert [label(text) for text in processed.infotexts] == [
        None,
        None,
        f"A alone: {general}",
        f"A alone: {general}",
        f"B alone: {expert}",
        f"B alone: {expert}",
        "comparison grid",
    ]
    assert all(image.size == (W, H) for image in processed.images[:6])
    grid = processed.images[6]
    assert grid.width > 3 * W and (grid.height - 2 * H) in range(10, 60)  # a label band over two rows, seeds on the left
    # The fused images are the ones a generation without the comparison makes.
    alone, _ = generate(webui, {**fusion, "compare": False}, batch_size=2)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(processed.images[:2], alone.images))
    # A alone is the plain generation; B alone is the fusion checkpoint loaded as the active
    # one with the fusion prompt (its own text encoder): same seeds, same noise.
    plain, _ = generate(webui, None, extension=False, batch_size=2)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(processed.images[2:4], plain.images))
    webui.load("expert")
    expert_alone, _ = generate(webui, None, extension=False, batch_size=2, prompt="a cartoon lion")
    assert all(np.abs(pixels(a) - pixels(b)).max() <= 1 for a, b in zip(processed.images[4:6], expert_alone.images))
    # The grid's tiles are those images, in rows fused | A | B.
    left = grid.width - 3 * W
    top = grid.height - 2 * H
    for row in range(2):
        for column, image in enumerate([processed.images[row], processed.images[2 + row], processed.images[4 + row]]):
            tile = grid.crop((left + column * W, top + row * H, left + (column + 1) * W, top + (row + 1) * H))
            assert np.array_equal(pixels(tile), pixels(image))


def test_comparison_runs_only_the_passes_each_image_needs(webui):
    processed, p = generate(webui, snb(compare=True), steps=8)
    stats = p.model_fusion_run.stats
    fused_calls = [kind for kind, variant in zip(stats.kinds, stats.variants) if variant == "fused"]
    assert len(fused_calls) == 8 and stats.variants.count("A alone") == stats.variants.count("B alone") == 8
    # A alone is the host's own call (passthrough); B alone runs the fusion UNet alone.
    fused_solo = fused_calls.count("solo")
    assert stats.passthrough_steps == fused_solo + 8
    assert stats.fused_steps == 8 - fused_solo
    assert stats.fusion_runs == stats.fused_steps + 8
    assert shared.state.job_no <= shared.state.job_count


@pytest.mark.parametrize("kind", ["hires", "img2img"])
def test_comparison_starts_from_the_batch_noise_in_every_kind_of_pass(webui, kind):
    extra = (
        {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.6}
        if kind == "hires"
        else {"img2img": True, "init_latent": torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(5))}
    )
    processed, _ = generate(webui, snb(compare=True, fusion_selection="999,1,1", mode=1), sampler_name="Euler a", **extra)
    plain, _ = generate(webui, None, extension=False, sampler_name="Euler a", **extra)
    assert label(processed.infotexts[1]).startswith("A alone")
    assert np.array_equal(pixels(processed.images[1]), pixels(plain.images[0]))
    assert not np.array_equal(pixels(processed.images[0]), pixels(plain.images[0]))


def test_regions_comparison_puts_every_region_on_one_checkpoint(webui):
    layout = [{"box": [0.0, 0.0, 0.5, 0.5], "prompt": "a cat"}, {"box": [0.5, 0.5, 0.5, 0.5], "prompt": "a dog", "model": "active"}]
    processed, _ = generate(webui, regions(*layout, compare=True), width=128, height=64, steps=4)
    general, expert = webui.title("general"), webui.title("expert")
    assert [label(text) for text in processed.infotexts] == [
        None,
        f"active everywhere: {general}",
        f"fusion everywhere: {expert}",
        "comparison grid",
    ]
    on_active, _ = generate(webui, regions(*[{**r, "model": "active"} for r in layout]), width=128, height=64, steps=4)
    on_fusion, _ = generate(webui, regions(*[{**r, "model": "fusion"} for r in layout]), width=128, height=64, steps=4)
    assert np.array_equal(pixels(processed.images[1]), pixels(on_active.images[0]))
    assert not np.array_equal(pixels(processed.images[2]), pixels(on_active.images[0]))
    # Fusion everywhere also puts the background (the main prompt) on the fusion checkpoint.
    assert not np.array_equal(pixels(processed.images[2]), pixels(on_fusion.images[0]))


def test_regions_comparison_without_a_fusion_checkpoint_is_refused(webui):
    from lib_fusion.arguments.args import FusionArgs, FusionArgumentError

    with pytest.raises(FusionArgumentError, match="model: choose a fusion checkpoint .compare runs every region on it."):
        FusionArgs.parse(regions({"box": [0, 0, 1, 1], "model": "active"}, model="", compare=True))


def test_snb_preview_shows_the_chosen_fused_steps_per_image(webui):
    shared.opts.model_fusion_preview_steps = 2
    processed, p = generate(webui, snb(preview=True, fusion_selection="1000,1,1", mode=1, mask="soft"), batch_size=2, steps=5)
    assert len(processed.images) == 2 + 2
    assert [label(text) for text in processed.infotexts[2:]] == ["saliency and mask preview"] * 2
    for preview in processed.images[2:]:
        assert preview.width > 3 * W and (preview.height - 2 * H) in range(10, 60)  # two steps, three columns
    # The tiles are the maps over the result: not the plain result, and different per image.
    first, second = (pixels(image) for image in processed.images[2:])
    assert not np.array_equal(first, second)
    # The seeds and settings in each preview's infotext give back the fused generation.
    params = infotext_utils.parse_generation_parameters(processed.infotexts[3])
    assert params["Seed"] == str(p.all_seeds[1]) and params["Fusion model"] == webui.title("expert")
    assert from_infotext(params).copy(update={"model": "expert"}) == p.model_fusion_run.args.copy(update={"preview": False})


def test_preview_with_no_fused_step_says_so(webui):
    processed, _ = generate(webui, snb(preview=True, mode=0, solo="fusion"))  # the fusion checkpoint alone, on purpose
    assert len(processed.images) == 1
    assert "no fused step to preview" in processed.comments


def test_region_preview_colours_each_region_by_its_checkpoint(webui):
    from lib_fusion.engine import pictures

    layout = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cat"}, {"box": [0.5, 0.0, 0.5, 1.0], "model": "active"}]
    processed, _ = generate(webui, regions(*layout, preview=True), width=128, height=64, steps=3)
    assert [label(text) for text in processed.infotexts] == [None, "region layout"]
    picture = processed.images[1]
    assert picture.width == 128 and picture.height > 64
    body = pixels(picture.crop((0, picture.height - 64, 128, picture.height)))
    result = pixels(processed.images[0])
    for columns, colour in ((slice(8, 56), pictures.COLOUR_B), (slice(72, 120), pictures.COLOUR_A)):
        expected = result[16:48, columns] * (1 - pictures.OVERLAY_ALPHA) + np.array(colour) * pictures.OVERLAY_ALPHA
        assert np.abs(body[16:48, columns] - expected).max() <= 1


def test_outputs_are_saved_where_the_webui_saves_its_own(webui, tmp_path):
    shared.opts.samples_save = shared.opts.grid_save = True
    images.saved.clear()
    p = webui.processing(snb(compare=True, preview=True, fusion_selection="999,1,1", mode=1), width=W, height=H, steps=3)
    p.outpath_samples, p.outpath_grids = str(tmp_path / "samples"), str(tmp_path / "grids")
    processing.process_images(p)
    saved = [(path.rsplit("/", 1)[-1], suffix) for path, _, suffix, _, _ in images.saved]
    assert saved == [
        ("samples", ""),
        ("samples", "-fusion-a"),
        ("samples", "-fusion-b"),
        ("grids", "-fusion-compare"),
        ("samples", "-fusion-preview"),
    ]
    assert all(label(info) for _, _, suffix, _, info in images.saved if suffix)
    reopened = Image.open(next((tmp_path / "samples").glob("*-fusion-a.png")))
    assert label(reopened.info["parameters"]).startswith("A alone")


def test_an_interrupt_during_the_comparison_keeps_the_fused_image_and_no_hook(webui):
    count = {"calls": 0}

    def interrupt_in_a_alone(step):
        count["calls"] += 1
        if count["calls"] == 8:  # the second step of A alone (6 fused steps first)
            shared.state.interrupted = True

    shared.state.on_step = interrupt_in_a_alone
    try:
        processed, _ = generate(webui, snb(compare=True))
    finally:
        shared.state.on_step = None
    assert len(processed.images) == 1 and label(processed.infotexts[0]) is None
    assert script_callbacks.registered_count() == 0


def test_the_extension_off_adds_nothing_and_the_comparison_option_alone_does_not_fuse(webui):
    processed, _ = generate(webui, snb(enabled=False, compare=True, preview=True), batch_size=2)
    assert len(processed.images) == 2 and all(label(text) is None for text in processed.infotexts)


def test_settings_give_the_accordion_defaults_and_fall_back_when_bad(webui, capsys):
    from lib_fusion import host

    script_callbacks.ui_settings_callback()  # the WebUI building its Settings page
    labels = shared.opts.data_labels
    assert {host.PREVIEW_STEPS, host.DEFAULT_MODEL, host.DEFAULT_SELECTION, host.DEFAULT_MODE} <= set(labels)
    assert all(labels[key].section == host.SECTION for key in labels if key.startswith("model_fusion_"))
    assert (host.ui_defaults().model, host.ui_defaults().fusion_selection, host.ui_defaults().mode) == ("", "600,1,1", 2)
    shared.opts.model_fusion_default_model, shared.opts.model_fusion_default_selection = "expert", "850,1,1.5"
    shared.opts.model_fusion_default_mode = 1.0  # the settings' number box gives floats
    assert (host.ui_defaults().model, host.ui_defaults().fusion_selection, host.ui_defaults().mode) == (
        webui.title("expert"),
        "850,1,1.5",
        1,
    )
    shared.opts.model_fusion_default_selection = "850,1"
    assert host.ui_defaults().fusion_selection == "600,1,1"
    assert "default settings are not used: " in capsys.readouterr().out
    for value, steps in ((0, 1), (4.0, 4), (99, 10), ("x", 3)):
        shared.opts.model_fusion_preview_steps = value
        assert host.preview_steps() == steps


def test_the_live_preview_shows_the_fused_prediction(webui):
    """The WebUI's live preview decodes the first cond row's x0 (``store_latent``): every row
    carries the fused prediction, so the preview is the fused image in the making. With Euler
    the last step's x0 is the result itself."""
    seen = []
    shared.state.on_step = lambda step: seen.append(shared.state.current_latent.clone())
    try:
        processed, _ = generate(webui, snb(fusion_selection="999,1,1", mode=1), sampler_name="Euler")
    finally:
        shared.state.on_step = None
    assert len(seen) == 6
    assert torch.allclose(seen[-1][0], processed.latents[0], atol=1e-5)
    plain, _ = generate(webui, None, extension=False, sampler_name="Euler")
    assert not torch.allclose(seen[-1][0], plain.latents[0], atol=1e-3)


def test_region_preview_gives_another_checkpoint_its_own_colour(webui):
    shared.opts.model_fusion_max_models = 2
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "model": "fusion"}, {"box": [0.5, 0.0, 0.5, 1.0], "model": "artist"}]
    args = {"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "preview": True}
    processed = webui.generate(args, steps=2, width=128)
    [layout] = [text for text in processed.infotexts if "Fusion output: region layout" in text]
    picture = processed.images[processed.infotexts.index(layout)]
    assert picture.size[0] >= 128  # drawn (the colours themselves: tests/unit/test_pictures.py)
