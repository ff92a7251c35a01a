"""Hostile input is normal input: a disabled accordion never fails or changes anything, a
field the chosen method does not read never fails it, and what a generation keeps is bounded."""

import torch
from modules import processing
from safetensors.torch import load_file

from lib_fusion.arguments import masks
from lib_fusion.arguments.args import FIELDS, FusionArgs
from lib_fusion.engine.checkpoint_cache import CACHE
from tests.bad_input_cases import NESTED, png

HALF_TYPED = {
    "fusion_selection": "600,1",
    "mode": 7,
    "window": 8,
    "stride": 16,
    "regions": "[{",
    "bootstrapping": 10**400,
    "view_batch_size": 0,
    "model": "x" * 10_000_000,
    "prompt": NESTED,
    "blur": "median",
}
SNB_ONLY = {
    "fusion_selection": "600,1",
    "mode": 7,
    "solo": "both",
    "saliency_uncond": "?",
    "blur": "median",
    "mask": "fuzzy",
    "prompt": NESTED,
}
REGIONS_ONLY = {"regions": "[{", "bootstrapping": 10**400, "window": 8, "stride": 16, "view_batch_size": 0, "circular": "yes"}


def test_a_disabled_accordion_with_half_typed_fields_is_the_plain_image(webui):
    plain = webui.latents(None, extension=False, batch_size=2)
    assert torch.equal(webui.latents({"enabled": False, **HALF_TYPED}, batch_size=2), plain)
    positional = FusionArgs().to_ui()  # the UI sends every component's value, in FIELDS order
    for field in ("fusion_selection", "regions", "window", "stride"):
        positional[FIELDS.index(field)] = {"window": 8.0, "stride": 16.0}.get(field, HALF_TYPED[field])
    p = webui.processing(None, batch_size=2)
    p.script_args = tuple(positional)
    assert torch.equal(torch.stack(processing.process_images(p).latents), plain)
    assert "Fusion" not in " ".join(p.extra_generation_params)


def test_regions_fields_never_fail_snb_and_snb_fields_never_fail_regions(webui):
    snb = {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2}
    assert torch.equal(webui.latents({**snb, **REGIONS_ONLY}, steps=4), webui.latents(snb, steps=4))
    regions = {"enabled": True, "model": "expert", "method": "regions", "regions": [{"box": [0, 0, 0.5, 1]}], "window": 8, "stride": 4}
    assert torch.equal(webui.latents({**regions, **SNB_ONLY}, steps=3), webui.latents(regions, steps=3))


def test_the_cached_fusion_weights_own_their_memory(webui):
    webui.generate({"enabled": True, "model": "expert"}, steps=1)
    unet = webui.fusion_unet()
    before = {name: tensor.clone() for name, tensor in unet.state_dict().items()}
    path = webui.models / "expert.safetensors"
    size = path.stat().st_size
    with open(path, "r+b") as handle:  # rewritten in place: same size, every weight byte zeroed
        handle.seek(size // 4)
        handle.write(b"\0" * (size - size // 4))
    assert all(torch.equal(tensor, before[name]) for name, tensor in unet.state_dict().items())


def test_a_changed_checkpoint_file_is_loaded_again(webui):
    webui.generate({"enabled": True, "model": "expert"}, steps=1)
    first = CACHE.value
    artist = (webui.models / "artist.safetensors").read_bytes()
    (webui.models / "expert.safetensors").write_bytes(artist)
    webui.generate({"enabled": True, "model": "expert"}, steps=1)
    assert CACHE.value is not first
    expected = load_file(str(webui.models / "expert.safetensors"))["model.diffusion_model.input.weight"]
    assert torch.equal(webui.fusion_unet().input.weight, expected)


def test_each_mask_is_decoded_once_per_generation_and_a_paste_decodes_none(webui, monkeypatch):
    from lib_fusion.arguments.infotext import paste_value

    decoded = []
    original = masks.decode_mask
    monkeypatch.setattr(masks, "decode_mask", lambda *a, **k: decoded.append(1) or original(*a, **k))
    left = {"mask": png(128, 64, (0, 0, 64, 64)), "prompt": "a cat"}
    regions = {"enabled": True, "model": "expert", "method": "regions", "regions": [left] * 4, "window": 8, "stride": 4}
    processed = webui.generate(regions, steps=2, width=128, height=64, enable_hr=True, hr_scale=1.5, denoising_strength=0.5)
    assert len(decoded) == 4  # first pass and hires pass share the decoded masks
    from modules import infotext_utils

    params = infotext_utils.parse_generation_parameters(processed.infotexts[0])
    decoded.clear()
    assert [paste_value(params, field) for field in FIELDS][0] is True
    assert decoded == []


def test_the_preview_keeps_a_bounded_sample_of_fused_steps(webui, monkeypatch):
    from lib_fusion.engine import outputs

    seen = []
    original = outputs.snb_previews
    monkeypatch.setattr(outputs, "snb_previews", lambda run, *a, **k: seen.append(list(run.traces)) or original(run, *a, **k))
    p = webui.processing({"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1, "preview": True}, steps=40)
    processing.process_images(p)
    assert p.model_fusion_run.stats.fused_steps == 40
    (kept,) = seen
    assert 2 <= len(kept) <= 2 * p.model_fusion_run.plan.preview_steps + 1  # not 40 sets of maps
    assert kept[0].step == 0 and kept[-1].step == 39  # spread from the first to the last
