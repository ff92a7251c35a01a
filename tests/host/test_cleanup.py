"""Nothing is lost: after any ending of a generation (success, bad argument, a late error,
Interrupt, Skip, an exception in either UNet, out of memory) no callback or patch remains,
the active model's weights are untouched, and the next plain generation is bit-identical
to one made before the extension ever ran."""

import pytest
import torch
from modules import processing, script_callbacks, shared
from standin import weights_hash

from lib_fusion.engine.checkpoint_cache import CACHE

STEPS = 6


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2, **overrides}


def regions(**overrides):
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion"}]
    return {"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "window": 8, "stride": 4, **overrides}


def at_step(index, action):
    """Run ``action`` once, when the sampler first reports step ``index`` (a button press)."""
    pressed = []

    def on_step(step):
        if step == index and not pressed:
            pressed.append(step)
            action()

    return on_step


def failing_unet(webui, monkeypatch, which, error, after_calls=2):
    """Make the active or the fusion UNet raise ``error`` from its third call on."""
    unet_class = type(webui.unet())
    active = webui.unet()
    original = unet_class.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        if (self is active) == (which == "active"):
            calls["n"] += 1
            if calls["n"] > after_calls:
                raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(unet_class, "forward", forward)


def interrupt():
    shared.state.interrupted = True


def skip():
    shared.state.skipped = True


OOM = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
ENDINGS = {
    # name: (fusion args, processing kwargs, what to arm, expected exception fragment or None)
    "success snb": (snb(), {}, None, None),
    "success regions": (regions(), {}, None, None),
    "bad argument": (snb(fusion_selection="600,1"), {}, None, "three comma-separated"),
    "unknown checkpoint": (snb(model="nope"), {}, None, "not in the WebUI's checkpoint list"),
    "late error": (regions(regions=[{"box": [0, 0, 0.01, 0.01]}]), {}, None, "covers no latent pixel"),
    "interrupt": (snb(), {"n_iter": 2}, ("step", 2, interrupt), None),
    "skip": (snb(), {"n_iter": 2}, ("step", 2, skip), None),
    "active UNet raises": (snb(), {}, ("unet", "active", RuntimeError("boom in the active UNet")), "boom in the active UNet"),
    "fusion UNet raises": (snb(), {}, ("unet", "fusion", RuntimeError("boom in the fusion UNet")), "boom in the fusion UNet"),
    "region UNet raises": (regions(), {}, ("unet", "fusion", RuntimeError("boom in a region")), "boom in a region"),
    "out of memory": (snb(), {}, ("unet", "fusion", OOM), "out of memory while fusing"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_leaves_the_webui_as_it_was(webui, monkeypatch, ending):
    model = shared.sd_model
    before = weights_hash(model)
    baseline = webui.latents(None, extension=False, steps=STEPS, batch_size=2)

    fusion, kwargs, arm, expected = ENDINGS[ending]
    if arm and arm[0] == "step":
        monkeypatch.setattr(shared.state, "on_step", at_step(arm[1], arm[2]), raising=False)
    elif arm:
        failing_unet(webui, monkeypatch, arm[1], arm[2])
    p = webui.processing(fusion, steps=STEPS, batch_size=2, **kwargs)
    if expected is None:
        processed = processing.process_images(p)
    else:
        with pytest.raises(BaseException) as raised:
            processing.process_images(p)
        assert expected in str(raised.value)
    monkeypatch.undo()
    shared.state.reset()

    assert script_callbacks.registered_count() == 0
    assert "sample" not in vars(p) or ending.startswith(("success", "interrupt", "skip"))
    held = getattr(p, "model_fusion_held", None)  # none when the arguments failed before the wrapper
    assert held is None or held.patched in (None, [])
    assert shared.sd_model is model and weights_hash(model) == before
    if webui.forge_family:  # the model's own UNet patcher is back, none of our hooks on it
        unet = shared.sd_model.forge_objects.unet
        assert unet is shared.sd_model.forge_objects_after_applying_lora.unet and "conditioning_modifiers" not in unet.model_options
    assert torch.equal(webui.latents(None, extension=False, steps=STEPS, batch_size=2), baseline)
    assert torch.equal(webui.latents(snb(enabled=False), steps=STEPS, batch_size=2), baseline)

    if ending == "skip":  # the skipped batch ends early; the next one is fused in full
        assert len(processed.images) == 4
        alone = webui.latents(snb(), steps=STEPS, batch_size=2, seed=p.seed + 2)
        assert torch.equal(torch.stack(processed.latents[2:]), alone)
    if ending == "interrupt":
        assert len(processed.images) == 2  # the first batch's partial result; the second never starts
    if ending == "out of memory":
        assert CACHE.key is None  # the fusion model was let go, so the memory is back


def test_postprocess_drops_the_wrapper_and_the_models(webui):
    p = webui.processing(snb(), steps=STEPS)
    processing.process_images(p)
    assert "sample" not in vars(p)
    assert p.model_fusion_held.fusion is None and p.model_fusion_run.passes == []


@pytest.mark.a1111_only("it swaps the sampler's inner model (test_forge.py drops the hooks instead)")
def test_a_sampler_that_bypasses_the_hook_gives_an_error_not_an_unfused_image(webui, monkeypatch):
    """Never silent: an extension that swaps the sampler's inner model after ours was hooked
    means the fusion never ran, so the image must not come back labelled as fused."""
    from modules import scripts, sd_samplers_kdiffusion

    class Swapper(scripts.Script):
        args_from = args_to = 1

        def process_before_every_sampling(self, p, *args, **kwargs):
            p.sampler.model_wrap_cfg.model_wrap = sd_samplers_kdiffusion.CompVisDenoiser(shared.sd_model)

    monkeypatch.setattr(webui.runner, "alwayson_scripts", [*webui.runner.alwayson_scripts, Swapper()])
    with pytest.raises(RuntimeError, match="the sampler never called the fusion hook"):
        webui.generate(snb(), steps=STEPS)
    assert script_callbacks.registered_count() == 0


@pytest.mark.a1111_only("DDIM with one step makes no denoiser call")
def test_a_pass_without_denoiser_calls_is_not_mistaken_for_a_bypass(webui):
    """DDIM with one step makes no model call (the WebUI returns the noise): nothing to fuse."""
    plain = webui.latents(None, extension=False, sampler_name="DDIM", steps=1)
    assert torch.equal(webui.latents(snb(), sampler_name="DDIM", steps=1), plain)


@pytest.mark.parametrize("sampler", ["LCM", "Euler a", "UniPC"])
def test_single_step_generations_fuse(webui, sampler):
    p = webui.processing(snb(), sampler_name=sampler, steps=1)
    out = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.fused_steps == 1 and torch.isfinite(out).all()
