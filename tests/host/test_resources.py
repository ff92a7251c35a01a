"""The secondary model's resources: one cached copy, the WebUI's memory flags and dtypes,
unloading (route and script unload), checkpoint formats, and memory over many generations."""

import gc
import os
import pickle
import warnings
import weakref

import pytest
import torch
from modules import devices, processing, script_callbacks, sd_models, shared

from lib_fusion.engine.checkpoint_cache import CACHE

DEVICE = torch.device("cpu", 0)
"""Stands for the GPU: a device the tests can tell apart from ``devices.cpu``."""


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2, **overrides}


def fusion_unet():
    return CACHE.value.unet


@pytest.fixture
def moves(monkeypatch):
    """Every ``Module.to(device)`` of a module that is not part of the active model."""
    monkeypatch.setattr(devices, "device", DEVICE)
    recorded = []
    original = torch.nn.Module.to

    def to(self, *args, **kwargs):
        device = next((a for a in args if isinstance(a, torch.device)), kwargs.get("device"))
        active = {id(m) for m in shared.sd_model.modules()}
        if device is not None and id(self) not in active:
            recorded.append((type(self).__name__, "device" if device == DEVICE else "cpu"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return recorded


@pytest.mark.a1111_only("its memory policy; Forge's memory manager places the model (test_forge.py)")
def test_by_default_the_fusion_model_stays_on_the_device(webui, moves):
    webui.generate(snb(), steps=4)
    webui.generate(snb(), steps=4)
    assert moves == [("TinyUNet", "device")]  # placed once when loaded, never moved again


@pytest.mark.a1111_only("--medvram; Forge's memory manager places the model")
@pytest.mark.parametrize("flag", ["medvram", "medvram_sdxl"])
def test_medvram_keeps_it_on_the_cpu_between_generations(sdxl_webui, moves, flag):
    setattr(shared.cmd_opts, flag, True)
    sdxl_webui.generate(snb(), steps=4)
    sdxl_webui.generate(snb(), steps=4)
    assert moves == [("TinyUNet", "cpu"), *[("TinyUNet", "device"), ("TinyUNet", "cpu")] * 2]


@pytest.mark.a1111_only("--medvram-sdxl; Forge's memory manager places the model")
def test_medvram_sdxl_leaves_sd1_alone(webui, moves):
    shared.cmd_opts.medvram_sdxl = True
    webui.generate(snb(), steps=4)
    assert moves == [("TinyUNet", "device")]


@pytest.mark.a1111_only("--lowvram; Forge's memory manager places the model")
def test_lowvram_moves_it_for_each_call_only(webui, moves):
    shared.cmd_opts.lowvram = True
    p = webui.processing(snb(text_encoder="own"), steps=4)
    processing.process_images(p)
    unet_moves = [where for name, where in moves if name == "TinyUNet"]
    calls = p.model_fusion_run.stats.fusion_runs
    assert unet_moves == ["cpu"] + ["device", "cpu"] * calls  # one UNet call per fused step
    encoder_moves = [where for name, where in moves if name.startswith("FrozenCLIPEmbedder")]
    assert encoder_moves == ["cpu"] + ["device", "cpu"] * (len(encoder_moves) // 2) and len(encoder_moves) >= 3


@pytest.mark.a1111_only("its dtype_unet; Forge's loader picks the storage dtype")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_fusion_unet_takes_the_webuis_unet_dtype(webui, monkeypatch, dtype):
    """fp16 hosts (no ``--no-half``) get a half fusion UNet; its output joins the sampler's float32."""
    monkeypatch.setattr(devices, "dtype_unet", dtype)
    out = webui.latents(snb(), steps=4)
    assert fusion_unet().input.weight.dtype == dtype
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_switching_the_fusion_checkpoint_frees_the_old_one(webui):
    loads = CACHE.loads
    webui.generate(snb(), steps=2)
    old = weakref.ref(fusion_unet())
    webui.generate(snb(model="artist"), steps=2)
    gc.collect()
    assert old() is None
    assert CACHE.loads == loads + 2 and os.path.basename(CACHE.key.filename) == "artist.safetensors"


def test_unload_route_and_script_unload_free_the_model(webui):
    unload = webui.app().routes[("POST", "/model-fusion/v1/unload")]
    webui.generate(snb(), steps=2)
    held = weakref.ref(fusion_unet())
    assert unload() == {"unloaded": True}
    gc.collect()
    assert held() is None and CACHE.key is None
    assert unload() == {"unloaded": False}

    webui.generate(snb(), steps=2)
    script_callbacks.script_unloaded_callback()  # the extension reloaded or the WebUI stopping
    assert CACHE.key is None


@pytest.mark.a1111_only("its own reader; Forge's loader reads the file")
def test_a_ckpt_is_read_through_the_webuis_restricted_loader(webui, monkeypatch):
    weights = sd_models.read_state_dict(str(webui.models / "expert.safetensors"))
    torch.save(weights, webui.models / "legacy.ckpt")
    (webui.models / "evil.ckpt").write_bytes(pickle.dumps(os.system, protocol=2))  # code, not tensors
    sd_models.list_models()
    read = []
    original = sd_models.read_state_dict
    monkeypatch.setattr(sd_models, "read_state_dict", lambda f, **kw: read.append(os.path.basename(f)) or original(f, **kw))

    from_ckpt = webui.latents(snb(model="legacy"), steps=4)
    ckpt_weights = webui.fusion_unet().state_dict()
    CACHE.unload()
    from_safetensors = webui.latents(snb(model="expert"), steps=4)
    # The same model: every weight equal. (The images need not be bit-equal: unpickled and
    # memory-mapped tensors sit at different alignments, which can change a convolution's
    # vectorised rounding, so the weights are the exact promise.)
    assert all(torch.equal(value, webui.fusion_unet().state_dict()[key]) for key, value in ckpt_weights.items())
    assert from_ckpt.shape == from_safetensors.shape and not torch.equal(from_ckpt, webui.latents(None, steps=4))
    with pytest.raises(ValueError, match="cannot read fusion checkpoint 'evil.ckpt"):
        webui.generate(snb(model="evil"), steps=4)
    assert read == ["legacy.ckpt", "evil.ckpt"]  # a .safetensors has its UNet tensors read alone


@pytest.mark.a1111_only("Forge's loader builds the checkpoint whole")
def test_a_safetensors_fusion_checkpoint_is_read_for_its_unet_alone(webui, monkeypatch):
    """Without its text encoder the fusion needs the UNet: the file's other tensors stay
    unread, and the UNet is built on the meta device and given the read tensors themselves."""
    import safetensors

    got = []
    original = safetensors.safe_open

    class Recording:
        def __init__(self, *args, **kwargs):
            self.handle = original(*args, **kwargs)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, key):
            got.append(key)
            return self.inner.get_tensor(key)

    monkeypatch.setattr(safetensors, "safe_open", Recording)
    webui.generate(snb(), steps=2)
    assert got and all(key.startswith("model.diffusion_model.") for key in got)
    unet = webui.fusion_unet()
    assert not any(t.is_meta for t in unet.state_dict().values())
    expected = safetensors.torch.load_file(str(webui.models / "expert.safetensors"))
    assert all(torch.equal(value, expected["model.diffusion_model." + key]) for key, value in unet.state_dict().items())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch's deprecated lazy attributes warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc for the resident set size")
def test_a_hundred_mixed_generations_keep_memory_flat(webui):
    """Fusion on/off, two fusion checkpoints, SNB and Regions, in a row, as API calls would come."""
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion"}, {"box": [0.5, 0.0, 0.5, 1.0], "model": "active"}]
    mix = [
        snb(),
        None,
        snb(model="artist", prompt="a cartoon lion"),
        {"enabled": True, "model": "expert", "method": "regions", "regions": boxes, "window": 8, "stride": 4},
        snb(enabled=False),
        {"enabled": True, "model": "artist", "method": "regions", "regions": boxes, "bootstrapping": 0.5},
        snb(fusion_selection="600,1"),  # a failing one too
    ]

    def generate(n):
        args = mix[n % len(mix)]
        try:
            webui.generate(args, steps=3, batch_size=2, seed=n)
        except ValueError:
            assert args is mix[-1]

    for n in range(20):  # warm-up: allocator pools, caches, lazy imports
        generate(n)
    rss, tensors, loads = rss_bytes(), live_tensors(), CACHE.loads
    for n in range(20, 120):
        generate(n)
    assert live_tensors() <= tensors
    assert rss_bytes() <= rss * 1.05
    assert CACHE.loads - loads >= 30  # the two checkpoints took turns in the one cache slot


def test_the_settings_section_keeps_or_frees_the_model_after_each_generation(webui):
    from modules import script_callbacks

    script_callbacks.ui_settings_callback()  # the WebUI building its Settings page
    info = shared.opts.data_labels["model_fusion_keep_loaded"]
    assert info.section == ("model_fusion", "Model Fusion") and info.default is True
    webui.generate(snb(), steps=2)
    assert CACHE.key is not None  # kept by default: the next generation loads nothing
    shared.opts.model_fusion_keep_loaded = False
    webui.generate(snb(), steps=2)
    assert CACHE.key is None
    with pytest.raises(ValueError):
        webui.generate(snb(regions=[{"box": [0, 0, 0.01, 0.01]}], method="regions"), steps=2)
    assert CACHE.key is None  # also after a failed generation


def test_the_budget_keeps_the_most_recent_checkpoints_and_frees_the_least_recent(webui):
    shared.opts.model_fusion_max_models = 2
    webui.generate(snb(), steps=2)
    webui.generate(snb(model="artist"), steps=2)
    loads = CACHE.loads
    webui.generate(snb(), steps=2)  # both held: nothing loaded again
    assert CACHE.loads == loads and [os.path.basename(key.filename) for key, _, _ in CACHE.held()] == [
        "artist.safetensors",
        "expert.safetensors",
    ]
    report = webui.app().routes[("GET", "/model-fusion/v1/models")]()["loaded"]
    assert [entry["title"] for entry in report["held"]] == [webui.title("artist"), webui.title("expert")]
    shared.opts.model_fusion_max_models = 1
    webui.generate(snb(model="artist"), steps=2)  # one slot: expert is freed, artist kept
    assert CACHE.loads == loads and len(CACHE.held()) == 1
    webui.generate(snb(), steps=2)  # and expert is loaded again
    assert CACHE.loads == loads + 1 and os.path.basename(CACHE.key.filename) == "expert.safetensors"


def held_names():
    return [os.path.basename(key.filename) for key, _, _ in CACHE.held()]


def test_lowering_the_budget_in_settings_frees_the_least_recent_checkpoints_at_once(webui):
    script_callbacks.ui_settings_callback()
    shared.opts.model_fusion_max_models = 2
    webui.generate(snb(), steps=2)
    webui.generate(snb(model="artist"), steps=2)
    assert held_names() == ["expert.safetensors", "artist.safetensors"]
    shared.opts.set("model_fusion_max_models", 1)  # as the Settings page and POST /sdapi/v1/options do
    assert held_names() == ["artist.safetensors"]


@pytest.mark.parametrize("budget", [float("inf"), float("-inf"), float("nan"), "many"])
def test_a_budget_set_to_anything_through_the_options_api_still_fuses(webui, budget):
    shared.opts.model_fusion_max_models = budget
    webui.generate(snb(), steps=2)
    assert len(CACHE.held()) == 1


def test_a_generation_never_evicts_a_checkpoint_it_needs_and_loads_only_what_is_missing(webui):
    """Budget 2, [expert (least recent), artist] held; expert with a further checkpoint
    (painter): painter takes artist's slot, and expert is not loaded again."""
    (webui.models / "painter.safetensors").write_bytes((webui.models / "artist.safetensors").read_bytes())
    sd_models.list_models()
    shared.opts.model_fusion_max_models = 2
    webui.generate(snb(), steps=2)
    webui.generate(snb(model="artist"), steps=2)
    loads = CACHE.loads
    webui.generate(snb(fusion_selection="0,1,1", models=[{"model": "painter"}]), steps=2)
    assert CACHE.loads == loads + 1 and sorted(held_names()) == ["expert.safetensors", "painter.safetensors"]


@pytest.mark.a1111_only("the parts AUTOMATIC1111's loader builds; Forge's loader builds the whole checkpoint")
def test_one_checkpoint_is_held_once_whichever_parts_a_generation_needs(webui):
    webui.generate(snb(text_encoder="own"), steps=2)  # UNet and text encoder
    loads = CACHE.loads
    webui.generate(snb(), steps=2)  # the UNet alone: the held build serves it
    assert CACHE.loads == loads and len(CACHE.held()) == 1
    CACHE.unload()
    webui.generate(snb(), steps=2)
    webui.generate(snb(text_encoder="own"), steps=2)  # more parts: the smaller build is freed first
    assert CACHE.loads == loads + 2 and len(CACHE.held()) == 1 and CACHE.key.parts == ("unet", "text_encoder")


def test_a_released_model_is_freed_at_once_even_when_its_parts_refer_to_each_other():
    """A checkpoint's parts refer to each other (Forge's engine and patchers do), so only the
    collector frees them; the cache collects after its last reference to the model is gone,
    so unloading frees the model it names at once, not at the next unload."""
    from lib_fusion.engine.checkpoint_cache import CacheKey, ModelCache

    class Part:
        pass

    def build():
        engine = Part()
        engine.self = engine  # a cycle
        model = Part()
        model.free = lambda: engine.self  # the host's free() closes over its engine
        return model, weakref.ref(engine)

    cache = ModelCache()
    model, alive = build()
    cache.get(CacheKey("a", 0, 0, "sd1", ("unet",)), lambda held=model: held)
    del model
    assert alive() is not None
    cache.unload()
    assert alive() is None
