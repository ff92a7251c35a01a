"""v-prediction checkpoints through whole generations, on every host and sampler the stand-in
models: a byte copy of a v checkpoint gives the plain image for every method; a v checkpoint
whose UNet predicts exactly the v of an eps twin's output fuses as the twin does (v with v, and
eps with v), which holds only if every model's output reaches the fusion in the sampler's
units and the saliency is measured in eps units; a sampler that cannot convert the other type
is refused by name (``docs/methods.md``, "Prediction types")."""

import pytest
import torch
from modules import processing, sd_models, shared
from standin import write_checkpoint

TWIN_METHODS = [
    {"mask": "hard"},
    {"mask": "soft"},
    {"mask": "mean"},
    {"method": "guidance", "guidance_weight": 2.5},
    {"method": "base_uncond"},
]
SAMPLERS = ["Euler", "DDIM"]
PROMPT = "a lion :0.7 AND a crown :0.6"


def host_prediction(webui):
    """What the host's active model predicts, in the host's own words."""
    if webui.forge_family:
        return shared.sd_model.forge_objects.unet.model.predictor.prediction_type
    return shared.sd_model.parameterization


def byte_copy(webui, name, of="general"):
    """A copy of a checkpoint, with the ``.yaml`` beside it that says what it predicts."""
    for suffix in (".safetensors", ".yaml"):
        source = webui.models / f"{of}{suffix}"
        if source.exists():
            (webui.models / f"{name}{suffix}").write_bytes(source.read_bytes())
    sd_models.list_models()


def test_the_hosts_read_the_stand_in_checkpoints_as_v(v_webui):
    """The stand-in tells each host what real v checkpoints tell it (a guard on the fixture)."""
    assert host_prediction(v_webui) in ("v", "v_prediction")
    if v_webui.forge_family:
        return
    from lib_fusion.engine.checkpoint_cache import CACHE

    v_webui.generate({"enabled": True, "model": "expert-eps", "fusion_selection": "0,1,1"}, steps=2)
    assert CACHE.value.prediction == "eps"
    v_webui.generate({"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}, steps=2)
    assert CACHE.value.prediction == "v"


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("method", TWIN_METHODS, ids=lambda method: "-".join(map(str, method.values())))
def test_a_byte_copy_of_a_v_checkpoint_with_the_same_prompts_gives_the_plain_image(v_webui, method, sampler):
    byte_copy(v_webui, "twin")
    plain = v_webui.latents(None, extension=False, steps=4, batch_size=2, prompt=PROMPT, sampler_name=sampler)
    fusion = {"enabled": True, "model": "twin", "fusion_selection": "0,1,1", **method}
    p = v_webui.processing(fusion, steps=4, batch_size=2, prompt=PROMPT, sampler_name=sampler)
    fused = torch.stack(processing.process_images(p).latents)
    assert p.model_fusion_run.stats.fused_steps == p.model_fusion_run.stats.fusion_runs > 0
    assert torch.equal(fused, plain)


CONTINUOUS_METHODS = [
    {"mask": "soft", "fusion_selection": "0,1,1"},
    {"mask": "mean", "fusion_selection": "0,1,1"},
    {"method": "guidance", "guidance_weight": 2.5, "fusion_selection": "0,1,1"},
    {"method": "base_uncond", "fusion_selection": "0,1,1"},
    {"mask": "soft", "fusion_selection": "400,0.5,2", "mode": 2},
    {
        "method": "regions",
        "regions": [
            {"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a crown", "model": "fusion"},
            {"box": [0.5, 0.0, 0.5, 1.0], "prompt": "a cat"},
        ],
        "window": 8,
        "stride": 4,
    },
]
"""Methods whose result moves smoothly with the models' outputs: a v twin's rounding (its v is
converted back by the host) moves the image by rounding alone. A hard mask's per-pixel choice
could flip on a near tie, so it is held to the plain image above instead."""


def v_twins(webui):
    """``general-v`` and ``expert-v``: v checkpoints whose UNets predict the v of general's and
    expert's eps outputs (``TinyUNet.v_from_eps``)."""
    for name, seed in (("general-v", 0), ("expert-v", 1)):
        write_checkpoint(webui.models / f"{name}.safetensors", seed=seed, prediction="v", v_of_eps=True)
    sd_models.list_models()


def fused_latents(webui, active, fusion, sampler, **method):
    webui.load(active)
    fusion_args = {"enabled": True, "model": fusion, "prompt": "a cartoon lion", **method}
    p = webui.processing(fusion_args, steps=4, prompt=PROMPT, sampler_name=sampler)
    latents = torch.stack(processing.process_images(p).latents)
    stats = p.model_fusion_run.stats
    assert stats.fusion_runs > 0 or stats.region_calls > 0
    return latents


def method_id(method: dict) -> str:
    return "-".join(str(value) for key, value in method.items() if key != "regions")


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("method", CONTINUOUS_METHODS, ids=method_id)
@pytest.mark.parametrize("pair", [("general-v", "expert-v"), ("general", "expert-v"), ("general-v", "expert")], ids="+".join)
def test_v_checkpoints_fuse_as_their_eps_twins(a1111_webui, pair, method, sampler):
    """AUTOMATIC1111 wraps each fusion UNet in the host's denoiser of its own prediction type
    (k-diffusion's ``CompVisVDenoiser`` or DDIM's ``CompVisTimestepsVDenoiser``), so v and
    mixed pairs give what the eps twins give, up to float rounding of the round trip through v
    (5 ulp of latents of order 1 per step, far below the 1e-4 asked). Were the saliency read
    in another unit, the soft masks would differ by whole percents."""
    v_twins(a1111_webui)
    expected = fused_latents(a1111_webui, "general", "expert", sampler, **method)
    got = fused_latents(a1111_webui, *pair, sampler, **method)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    assert error <= 1e-5, error


def test_a_sampler_that_cannot_convert_the_other_prediction_type_is_refused_by_name(a1111_webui):
    """LCM's denoiser has no v counterpart in AUTOMATIC1111: fusing an eps and a v checkpoint
    there would read one of them wrongly, so the generation fails naming both types."""
    v_twins(a1111_webui)
    with pytest.raises(Exception, match=r"Model Fusion: fusion checkpoint 'expert-v.* predicts v and the active checkpoint predicts eps"):
        a1111_webui.generate({"enabled": True, "model": "expert-v", "fusion_selection": "0,1,1"}, steps=4, sampler_name="LCM", cfg_scale=2)
    fused = a1111_webui.latents({"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}, steps=4, sampler_name="LCM", cfg_scale=2)
    assert torch.isfinite(fused).all()


def test_on_forge_each_checkpoint_keeps_its_own_predictor(forge_webui):
    """Forge converts every engine's output with that engine's predictor: expert's weights read
    as v give another image than read as eps, and the run fuses them all the same."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    images = {}
    for name in ("expert", "expert-v"):
        images[name] = forge_webui.latents({"enabled": True, "model": name, "fusion_selection": "0,1,1"}, steps=4)
        assert CACHE.value.unet.model.predictor.prediction_type == ("v_prediction" if name == "expert-v" else "epsilon")
    assert torch.isfinite(images["expert-v"]).all()
    assert not torch.equal(images["expert"], images["expert-v"])


UNKNOWN_NOISE = r"Model Fusion: the active checkpoint \(StableDiffusion\) noises its latent in a way the fusion does not know"


@pytest.mark.parametrize("method", [{}, {"method": "guidance"}, {"method": "regions", "regions": [{"box": [0, 0, 0.5, 1]}]}], ids=str)
def test_a_family_that_noises_in_another_way_is_refused_before_anything_loads(forge_webui, method, monkeypatch):
    """The fusion reads the families whose predictor noises as ``x0 + sigma noise`` or as a
    rectified flow: one that does neither is recognised by what its predictor does and refused
    by name before any checkpoint loads; with fusion off it generates as without the extension."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    predictor = shared.sd_model.forge_objects.unet.model.predictor
    monkeypatch.setattr(predictor, "noise_scaling", lambda sigma, noise, latent, max_denoise=False: latent + noise * sigma**2)
    with pytest.raises(Exception, match=UNKNOWN_NOISE):
        forge_webui.generate({"enabled": True, "model": "expert", **method}, steps=2)
    assert CACHE.value is None
    plain = forge_webui.latents(None, extension=False, steps=2)
    assert torch.equal(forge_webui.latents({"enabled": False, "model": "expert"}, steps=2), plain)


def test_a_host_model_that_brings_its_own_denoiser_is_refused_by_name(a1111_webui, monkeypatch):
    """AUTOMATIC1111's SD3 samples through a denoiser of its own (``create_denoiser``, flow
    matching): no fusion UNet can be wrapped to match it."""
    monkeypatch.setattr(shared.sd_model, "create_denoiser", lambda: None, raising=False)
    with pytest.raises(Exception, match=r"Model Fusion: the active checkpoint \(TinySD\) brings a sampler of its own"):
        a1111_webui.generate({"enabled": True, "model": "expert"}, steps=2)


def test_a_yaml_added_beside_a_held_checkpoint_reloads_it_with_its_type(webui):
    """Both host families read a ``.yaml`` beside a checkpoint for what it predicts: one written
    after the checkpoint was cached makes the next fused generation load it again, as v."""
    from lib_fusion.engine.checkpoint_cache import CACHE

    fusion = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1"}
    as_eps = webui.latents(fusion, steps=2)
    loads = CACHE.loads
    (webui.models / "expert.yaml").write_bytes((webui.models / "expert-v.yaml").read_bytes())
    as_v = webui.latents(fusion, steps=2)
    assert CACHE.loads == loads + 1 and not torch.equal(as_eps, as_v)
    assert (CACHE.value.prediction or CACHE.value.unet.model.predictor.prediction_type) in ("v", "v_prediction")
