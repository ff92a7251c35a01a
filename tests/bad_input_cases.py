"""The bad-input table: one row per bad input, with the fragments its error must contain
(the input's name and what would be valid). Run through the stand-in host by
``tests/host/test_bad_input.py`` and through a real WebUI's API by ``tests/webui``.

A row is ``(name, fusion arguments, processing fields, setup, fragments)``. The fusion
arguments are the API dict, or a callable giving the fusion checkpoint's name; ``setup``
prepares the checkpoint folder (stand-in only).
"""

import base64
import io
import struct
import zlib

import torch
from PIL import Image

from lib_fusion.arguments.masks import MAX_BYTES

LEFT = [0.0, 0.0, 0.5, 1.0]
NESTED: list = []
for _ in range(100_000):
    NESTED = [NESTED]


def snb(**overrides):
    return {"enabled": True, "model": "expert", **overrides}


def regions(*items, **overrides):
    return {"enabled": True, "model": "expert", "method": "regions", "regions": list(items), **overrides}


def png(width, height, box=None, mode="L"):
    image = Image.new(mode, (width, height), 0)
    if box:
        image.paste(255, box)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_claiming(width, height):
    """A tiny file whose PNG header claims a huge image (a decompression bomb's first bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")).decode()


def png_truncated(width, height):
    """A real PNG of the image's size with its pixel data cut short (the header promises more)."""
    raw = base64.b64decode(png(width, height, (0, 0, width // 2, height), mode="L"))
    idat = raw.index(b"IDAT")
    length = struct.unpack(">I", raw[idat - 4 : idat])[0]
    data = zlib.decompress(raw[idat + 4 : idat + 4 + length])[: width * height // 4]

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return base64.b64encode(raw[: idat - 4] + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")).decode()


def gif():
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="GIF")
    return base64.b64encode(buffer.getvalue()).decode()


def with_file(name, content):
    """A checkpoint file written into the WebUI's folder (and listed) before the generation."""

    def setup(webui):
        from modules import sd_models

        (webui.models / name).write_bytes(content(webui) if callable(content) else content)
        sd_models.list_models()

    return setup


def listed_then_deleted(webui):
    """A checkpoint the WebUI lists whose file is gone by the time the generation starts."""
    from modules import sd_models

    (webui.models / "gone.safetensors").write_bytes((webui.models / "expert.safetensors").read_bytes())
    sd_models.list_models()
    (webui.models / "gone.safetensors").unlink()
    return "gone"


def integer_unet(webui):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(webui.models / "expert.safetensors"))
    return save_file_bytes({k: (v * 100).to(torch.int32) if k.startswith("model.") else v for k, v in weights.items()}, save_file)


def save_file_bytes(weights, save_file):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/w.safetensors"
        save_file(weights, path)
        with open(path, "rb") as handle:
            return handle.read()


def allow_two_checkpoints(webui):
    from modules import shared

    shared.opts.model_fusion_max_models = 2


def truncated(webui):
    return (webui.models / "expert.safetensors").read_bytes()[:-100]


def outside_the_list(webui):
    """A valid checkpoint that exists on disk but not in the WebUI's folder."""
    target = webui.models.parent / "elsewhere.safetensors"
    target.write_bytes((webui.models / "expert.safetensors").read_bytes())
    return str(target)


CASES = [
    # -- the fusion checkpoint ----------------------------------------------------------------
    ("unknown checkpoint", snb(model="nope"), {}, None, ["fusion checkpoint 'nope' is not in the WebUI's checkpoint list", "Known:"]),
    ("no checkpoint", {"enabled": True}, {}, None, ["model: choose a fusion checkpoint", "title, name or hash"]),
    ("blank checkpoint", snb(model="   "), {}, None, ["model: choose a fusion checkpoint"]),
    ("wider UNet", snb(model="wide"), {}, None, ["'wide.safetensors", "not of the active checkpoint's family", "SD1 with SD1"]),
    ("SDXL into SD1", snb(model="other-sdxl"), {}, None, ["not of the active checkpoint's family", "weights are unknown"]),
    (
        "corrupt file",
        snb(model="broken"),
        {},
        with_file("broken.safetensors", b"\x10\x00\x00junk"),
        ["cannot read fusion checkpoint 'broken"],
    ),
    ("truncated file", snb(model="cut"), {}, with_file("cut.safetensors", truncated), ["cannot read fusion checkpoint 'cut"]),
    ("active as fusion", snb(model="general"), {}, None, ["'general.safetensors", "is the active checkpoint", "give a fusion prompt"]),
    (
        "active as fusion, prompts apart by a LoRA tag",
        snb(model="general", prompt="a lion with a crown <lora:style:0.8>"),
        {"prompt": "a lion with a crown"},
        None,
        ["is the active checkpoint and no fusion prompt differs"],
    ),
    ("a filesystem path", snb(model="/etc/passwd"), {}, None, ["'/etc/passwd' is not in the WebUI's checkpoint list"]),
    ("a file outside the list", outside_the_list, {}, None, ["elsewhere.safetensors' is not in the WebUI's checkpoint list"]),
    # -- fusion_selection and mode --------------------------------------------------------------
    ("one number", snb(fusion_selection="600"), {}, None, ["fusion_selection", "three comma-separated numbers 'v1,kg,ke'"]),
    ("two numbers", snb(fusion_selection="600,1"), {}, None, ["fusion_selection", "three comma-separated"]),
    ("four numbers", snb(fusion_selection="600,1,1,1"), {}, None, ["fusion_selection", "three comma-separated"]),
    ("letters", snb(fusion_selection="a,b,c"), {}, None, ["fusion_selection", "v1='a' is not a number"]),
    ("negative kg", snb(fusion_selection="600,-1,1"), {}, None, ["kg=-1 must be in [1e-06, 1000]"]),
    ("zero ke", snb(fusion_selection="600,1,0"), {}, None, ["ke=0 must be in [1e-06, 1000]"]),
    ("huge kg", snb(fusion_selection="600,5000,1"), {}, None, ["kg=5000 must be in [1e-06, 1000]"]),
    ("NaN v1", snb(fusion_selection="nan,1,1"), {}, None, ["v1=nan must be finite"]),
    ("infinite ke", snb(fusion_selection="600,1,inf"), {}, None, ["ke=inf must be finite"]),
    ("v1 1e9", snb(fusion_selection="1e9,1,1"), {}, None, ["v1=1e+09 must be a DDPM timestep in [0, 1000]"]),
    ("not a string", snb(fusion_selection=600), {}, None, ["fusion_selection: 600", "str"]),
    ("mode 3", snb(mode=3), {}, None, ["mode: 3", "must be 0 (no fusion), 1 (fuse when t <= v1) or 2"]),
    ("mode -1", snb(mode=-1), {}, None, ["mode: -1", "must be 0"]),
    ("mode as text", snb(mode="2"), {}, None, ["mode: '2'", "integer"]),
    ("mode 1.5", snb(mode=1.5), {}, None, ["mode: 1.5", "integer"]),
    # -- types, choices and names -----------------------------------------------------------------
    ("enabled as text", {"enabled": "yes", "model": "expert"}, {}, None, ["enabled: 'yes'", "boolean"]),
    ("model as a number", snb(model=3), {}, None, ["model: 3", "str"]),
    ("solo", snb(solo="both"), {}, None, ["solo: 'both'", "'active', 'fusion'"]),
    ("blur", snb(blur="median"), {}, None, ["blur: 'median'", "'box', 'gaussian'"]),
    ("mask", snb(mask="fuzzy"), {}, None, ["mask: 'fuzzy'", "'hard', 'soft'"]),
    ("text encoder", snb(text_encoder="clip"), {}, None, ["text_encoder: 'clip'", "'solo', 'own'"]),
    ("saliency uncond", snb(saliency_uncond="none"), {}, None, ["saliency_uncond: 'none'", "'solo', 'own'"]),
    ("method", snb(method="regions!"), {}, None, ["method: 'regions!'", "'snb', 'regions'"]),
    ("unknown field", snb(kg=2), {}, None, ["kg: unknown field; valid fields: enabled, model, method"]),
    ("prompt as a list", snb(prompt=["a", "b"]), {}, None, ["prompt: ['a', 'b']", "str"]),
    # -- regions ------------------------------------------------------------------------------------
    ("box outside", regions({"box": [0.5, 0, 0.6, 1]}), {}, None, ["regions[0].box: [0.5, 0, 0.6, 1]: outside the canvas", "x + w <= 1"]),
    ("box of 3", regions({"box": [0, 0, 1]}), {}, None, ["regions[0].box", "give 4 numbers [x, y, w, h]"]),
    ("empty box", regions({"box": LEFT}, {"box": [0.2, 0.2, 0, 0.5]}), {}, None, ["regions[1].box", "width and height must be above 0"]),
    ("box of text", regions({"box": [0, 0, "1", 1]}), {}, None, ["regions[0].box: [0, 0, '1', 1]: '1' is not a number"]),
    ("box and mask", regions({"box": LEFT, "mask": png(64, 64, (0, 0, 8, 8))}), {}, None, ["regions[0]: give exactly one of box"]),
    ("neither", regions({"prompt": "a cat"}), {}, None, ["regions[0]: give exactly one of box [x, y, w, h] or mask"]),
    ("weight 0", regions({"box": LEFT, "weight": 0}), {}, None, ["regions[0].weight: 0: must be from 1e-06 to 100"]),
    ("region model", regions({"box": LEFT, "model": "nope"}), {}, None, ["regions[0].model: fusion checkpoint 'nope' is not in the"]),
    ("background unknown", regions({"box": LEFT}, background="nope"), {}, None, ["background: fusion checkpoint 'nope' is not in the"]),
    (
        "background of another family",
        regions({"box": LEFT, "model": "active"}, background="other-sdxl"),
        {},
        None,
        ["background: fusion checkpoint 'other-sdxl", "not of the active checkpoint's family"],
    ),
    ("background blank", regions({"box": LEFT}, background=" "), {}, None, ["background", "choose 'active', 'fusion' or a"]),
    ("region model blank", regions({"box": LEFT, "model": "  "}), {}, None, ["regions[0].model", "choose 'active', 'fusion' or a"]),
    (
        "region model of another family",
        regions({"box": LEFT, "model": "active"}, {"box": [0.5, 0, 0.5, 1], "model": "other-sdxl"}),
        {},
        None,
        ["regions[1].model: fusion checkpoint 'other-sdxl", "not of the active checkpoint's family"],
    ),
    (
        "region models over the budget",
        regions({"box": LEFT}, {"box": [0.5, 0, 0.5, 1], "model": "artist"}),
        {},
        None,
        ["needs 2 checkpoints besides the active one", "'expert.safetensors", "'artist.safetensors", "keeps at most 1 in memory"],
    ),
    ("region field", regions({"box": LEFT, "colour": "red"}), {}, None, ["regions[0].colour: unknown field; valid fields: box, mask"]),
    ("17 regions", regions(*[{"box": LEFT}] * 17), {}, None, ["17 regions; at most 16"]),
    # -- several fusion checkpoints (SNB) ----------------------------------------------------------
    (
        "models: unknown second",
        snb(models=[{"model": "artist"}, {"model": "nope"}]),
        {},
        None,
        ["models[1].model: fusion checkpoint 'nope'"],
    ),
    (
        "models: another family",
        snb(models=[{"model": "other-sdxl"}]),
        {},
        allow_two_checkpoints,
        ["models[0].model: fusion checkpoint 'other-sdxl", "not of the active checkpoint's family"],
    ),
    ("models: a repeat", snb(models=[{"model": "expert.safetensors"}]), {}, None, ["models[0].model", "listed twice (also as model)"]),
    (
        "models: a repeat, model empty",
        {"enabled": True, "models": [{"model": "expert"}, {"model": "artist"}, {"model": "expert.safetensors"}]},
        {},
        allow_two_checkpoints,
        ["models[2].model", "listed twice (also as models[0])"],
    ),
    ("models: the active one", snb(models=[{"model": "general"}]), {}, None, ["models[0].model", "is the active checkpoint, model A"]),
    ("models: none", {"enabled": True, "models": []}, {}, None, ["model: choose a fusion checkpoint"]),
    ("models: a hundred", snb(models=[{"model": "artist"}] * 100), {}, None, ["100 checkpoints; at most 7"]),
    ("models: over the budget", snb(models=[{"model": "artist"}]), {}, None, ["needs 2 checkpoints besides the active one", "at most 1"]),
    (
        "models: with guidance",
        snb(method="guidance", models=[{"model": "artist"}]),
        {},
        None,
        ["models: several fusion checkpoints fuse by SNB"],
    ),
    ("models: bad window", snb(models=[{"model": "artist", "window": [0.5, 0.5]}]), {}, None, ["models[0].window", "0 <= from < to <= 1"]),
    ("models: bad k", snb(models=[{"model": "artist", "k": -1}]), {}, None, ["models[0].k", "a saliency factor from"]),
    ("models: field", snb(models=[{"model": "artist", "weight": 2}]), {}, None, ["models[0].weight: unknown field; valid fields: model"]),
    ("regions JSON", regions(regions="[{"), {}, None, ["regions: '[{': not valid JSON"]),
    ("region too small", regions({"box": [0, 0, 0.01, 0.01]}), {}, None, ["regions[0] covers no latent pixel of the 64x64", "larger"]),
    ("regions without model", {"enabled": True, "method": "regions", "regions": [{"box": LEFT}]}, {}, None, ["model: choose a fusion"]),
    # -- masks --------------------------------------------------------------------------------------
    ("mask not PNG", regions({"mask": gif()}), {}, None, ["regions[0].mask", "not a PNG image", "send a black-and-white PNG"]),
    ("mask not base64", regions({"mask": "%%%"}), {}, None, ["regions[0].mask", "not valid base64"]),
    ("mask bomb", regions({"mask": png_claiming(100_000, 100_000)}), {}, None, ["regions[0].mask", "more pixels than 8192x8192"]),
    ("mask too big", regions({"mask": "A" * (MAX_BYTES * 2)}), {}, None, ["regions[0].mask", "over the 8 MiB limit"]),
    ("mask empty", regions({"mask": png(64, 64)}), {}, None, ["regions[0].mask", "an empty mask (no white pixel)"]),
    ("mask size", regions({"mask": png(32, 32, (0, 0, 16, 16))}), {}, None, ["regions[0].mask is 32x32 but the image is 64x64"]),
    ("mask data URL", regions({"mask": "data:image/jpeg;base64,AAAA"}), {}, None, ["regions[0].mask", "send a PNG"]),
    # -- panorama settings --------------------------------------------------------------------------
    ("window 4", regions({"box": LEFT}, window=4), {}, None, ["window: 4: 0 (the model's native size) or 8 to 1024"]),
    ("stride 0", regions({"box": LEFT}, stride=0), {}, None, ["stride: 0: from 1 to the window size"]),
    ("stride over window", regions({"box": LEFT}, window=8, stride=16), {}, None, ["stride: 16: from 1 to the window size (8"]),
    ("stride over native", regions({"box": LEFT}, stride=100), {}, None, ["stride 100 is larger than the window (64 latent pixels)"]),
    ("view batch 0", regions({"box": LEFT}, view_batch_size=0), {}, None, ["view_batch_size: 0: from 1 to 64"]),
    ("view batch 65", regions({"box": LEFT}, view_batch_size=65), {}, None, ["view_batch_size: 65: from 1 to 64"]),
    ("bootstrapping 1.5", regions({"box": LEFT}, bootstrapping=1.5), {}, None, ["bootstrapping: 1.5: must be a fraction", "from 0 to 1"]),
    ("circular as text", regions({"box": LEFT}, circular="yes"), {}, None, ["circular: 'yes'", "boolean"]),
    ("stride as text", regions({"box": LEFT}, stride="8"), {}, None, ["stride: '8': a whole number of latent pixels or auto"]),
    ("windows unknown", regions({"box": LEFT}, windows="tiles"), {}, None, ["windows: 'tiles'", "'overlap', 'shifted'"]),
    ("windows of a region", regions({"box": LEFT, "windows": "shifted"}), {}, None, ["regions[0].windows: unknown field"]),
    # -- values that break a parser rather than a rule (none may pass as a plain image) --------------
    ("huge box number", regions({"box": [0, 0, 0.5, 10**400]}), {}, None, ["regions[0].box", "an integer of 401 digits", "too large"]),
    ("huge weight", regions({"box": LEFT, "weight": 10**400}), {}, None, ["regions[0].weight", "too large"]),
    ("huge bootstrapping", regions({"box": LEFT}, bootstrapping=-(10**5000)), {}, None, ["bootstrapping", "integer of", "too large"]),
    ("huge window", regions({"box": LEFT}, window=10**5000), {}, None, ["window", "integer of thousands of digits", "8 to 1024"]),
    ("huge mode", snb(mode=10**400), {}, None, ["mode", "an integer of 401 digits", "must be 0"]),
    ("deep regions", regions(NESTED), {}, None, ["regions[0]", "nested deeper than any valid value"]),
    ("deep regions JSON", regions(regions="[" * 100_000 + "]" * 100_000), {}, None, ["regions", "more than 10000 values"]),
    ("deep regions JSON under the count", regions(regions="[" * 5_000 + "]" * 5_000), {}, None, ["regions", "not usable JSON"]),
    ("million-value regions JSON", regions(regions="[" + "0," * 1_000_000 + "0]"), {}, None, ["regions", "more than 10000 values"]),
    ("deep prompt", snb(prompt=NESTED), {}, None, ["prompt", "nested deeper than any valid value"]),
    ("long box", regions({"box": [0.5] * 20_000}), {}, None, ["more than 10000 values"]),
    ("megabyte prompt", snb(prompt="a lion " * 200_000), {}, None, ["prompt: 1400000 characters; at most 100000"]),
    ("ten-megabyte name", snb(model="x" * 10_000_000), {}, None, ["model: 10000000 characters; at most 100000"]),
    ("long unknown name", snb(model="y" * 50_000), {}, None, ["fusion checkpoint 'yyyy", "(50000 characters) is not in the WebUI's"]),
    ("tiny weight", regions({"box": LEFT, "weight": 1e-300}), {}, None, ["regions[0].weight: 1e-300: must be from 1e-06 to 100"]),
    ("tiny kg", snb(fusion_selection="600,1e-300,1"), {}, None, ["kg=1e-300 must be in [1e-06, 1000]"]),
    ("two argument objects", (snb(), snb(model="artist")), {}, None, ["got 2 argument objects; send one object"]),
    (
        "same checkpoint, same prompt",
        snb(model="general", prompt="a lion with a crown"),
        {},
        None,
        ["is the active checkpoint", "no fusion prompt differs"],
    ),
    (
        "same prompts in a batch",
        snb(model="general", prompt="a b", negative_prompt="n"),
        {"prompt": ["a b", "a b"], "negative_prompt": "n", "batch_size": 2},
        None,
        ["no fusion prompt differs"],
    ),
    # -- the checkpoint file ------------------------------------------------------------------------
    (
        "deleted file",
        listed_then_deleted,
        {},
        None,
        ["fusion checkpoint 'gone.safetensors", "cannot be read from disk", "moved or deleted"],
    ),
    (
        "integer weights",
        snb(model="ints"),
        {},
        with_file("ints.safetensors", integer_unet),
        ["'ints.safetensors", "not floating point", "torch.int32"],
    ),
    # -- masks, read before a pixel is decoded ------------------------------------------------------
    (
        "mask of another size, huge",
        regions({"mask": png_claiming(8000, 8000)}),
        {},
        None,
        ["regions[0].mask is 8000x8000 but the image is 64x64"],
    ),
    ("mask data cut short", regions({"mask": png_truncated(64, 64)}), {}, None, ["regions[0].mask", "shorter than its header says"]),
    (
        "mask pixels in all",
        regions(*[{"mask": png_claiming(4096, 4096)}] * 5, window=128, stride=64),
        {"width": 4096, "height": 4096},
        None,
        ["5 masks of 4096x4096", "67,108,864 mask pixels"],
    ),
    # -- panorama work ------------------------------------------------------------------------------
    (
        "too many views",
        regions({"box": LEFT}, window=8, stride=1),
        {"width": 2048, "height": 2048},
        None,
        ["62001 views", "use stride 8 or more"],
    ),
    (
        "too many shifted windows",
        regions({"box": LEFT}, window=8, windows="shifted"),
        {"width": 2048, "height": 2048},
        None,
        ["window 8 makes over 1024 windows per step", "use a larger window"],
    ),
    # -- fusion that would change nothing ----------------------------------------------------------
    (
        "no step in the window",
        snb(fusion_selection="1000,1,1", mode=2),
        {},
        None,
        ["no step of this txt2img falls inside the fusion window", "t > 1000"],
    ),
    (
        "no step in the late window",
        snb(fusion_selection="0,1,1", mode=1),
        {"sampler_name": "DPM++ 2M"},
        None,
        ["no step of this txt2img falls inside the fusion window", "fuses only t <= 0", 'fusion_selection "'],
    ),
    (
        "a checkpoint joining no fused step",
        snb(models=[{"model": "artist", "window": [0.0, 1e-300]}]),
        {},
        allow_two_checkpoints,
        ["models[0].model 'artist.safetensors", "joined no fused step", "widen its window"],
    ),
    ("regions: none on one window", regions(), {}, None, ["Regions with no region on a 64x64 canvas", "add a region"]),
    (
        "background hidden by the regions",
        regions({"box": [0.0, 0.0, 1.0, 1.0], "model": "active"}, background="fusion"),
        {},
        None,
        ["background: the regions cover the whole 64x64 image", "'fusion' would never run"],
    ),
    ("circular on one window", regions({"box": LEFT}, circular=True), {}, None, ["circular wraps", "64 px wide image is one window"]),
    # -- the generation -----------------------------------------------------------------------------
    ("width 500", snb(), {"width": 500}, None, ["width 500 is not a multiple of 8", "use 496 or 504"]),
    ("height 60", snb(), {"height": 60}, None, ["height 60 is not a multiple of 8", "use 56 or 64"]),
    ("refiner", snb(), {"refiner_checkpoint": "expert"}, None, ["the refiner switches checkpoints", "turn the refiner off"]),
]
