"""A handle on the stand-in WebUI: a checkpoint folder, the active model, the real script.

Used by the host tests (``tests/host/conftest.py``) and by the benchmarks in ``bench/``.
"""

import hashlib
import importlib.util
from pathlib import Path

import flavour
import tiny_sd
import torch
import xyz_grid
from backend import memory_management
from modules import processing, script_callbacks, scripts, sd_models, sd_models_config, shared
from omegaconf import OmegaConf
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[3]

CONFIGS = {
    "sd1": """
model:
  params:
    unet_config:
      target: {target}
      params:
        hidden: {hidden}
        in_channels: 4
    cond_stage_config:
      target: tiny_sd.FrozenCLIPEmbedder
""",
    "sdxl": f"""
model:
  target: tiny_sd.TinySDXL
  params:
    network_config:
      target: {{target}}
      params:
        hidden: {{hidden}}
        in_channels: 4
        adm_in_channels: {tiny_sd.ADM}
    conditioner_config:
      target: tiny_sd.TinyConditioner
""",
}
CONFIGS["sd2"] = (
    CONFIGS["sd1"]
    .replace("in_channels: 4", "in_channels: 4\n        context_dim: 1024")
    .replace("tiny_sd.FrozenCLIPEmbedder", "tiny_sd.FrozenCLIPEmbedder\n      params:\n        context_dim: 1024")
)
"""The family's yaml as the host keeps it (``shared.sd_model.used_config``): SD1 (ldm names),
SD 2.x-shaped (SD1's with a text width of 1024, the width by which AUTOMATIC1111 tells SD 2.x)
or SDXL-shaped (sgm names, dict conditioning)."""

V_CONFIG = {
    "sd1": {"model": {"params": {"parameterization": "v"}}},
    "sd2": {"model": {"params": {"parameterization": "v"}}},
    "sdxl": {
        "model": {
            "params": {
                "denoiser_config": {"params": {"scaling_config": {"target": "sgm.modules.diffusionmodules.denoiser_scaling.VScaling"}}}
            }
        }
    },
}
"""What makes a family's config v-prediction: ldm's ``parameterization``, sgm's ``VScaling``."""

FLOW_FAMILIES = ("sd3", "flux")
"""Neo's rectified-flow families in the stand-in's shapes (``backend/diffusion_engine/base.py``):
SD3's (real CFG; the discrete-flow predictor Lumina 2, Z-Image and Qwen-Image share on Neo) and
Flux dev's (guidance-distilled), each a :class:`tiny_sd.TinyDiT`."""


def write_checkpoint(
    path: Path,
    seed: int,
    hidden: int = 16,
    unet_class=tiny_sd.TinyUNet,
    family: str = "sd1",
    prediction: str = "eps",
    marked_by: str = "yaml",
    v_of_eps: bool = False,
    text_encoder: bool = True,
) -> Path:
    """A tiny checkpoint of ``family`` (:data:`FLOW_FAMILIES`: a DiT, which only the Forge family
    loads). ``prediction="v"``: its UNet's output is read as v, told
    to the hosts the way real v checkpoints tell it (``marked_by``): a ``.yaml`` beside it (both
    hosts read it), Forge's ``v_pred`` key (SDXL v-pred fine-tunes), or (SD 2.x) weights whose
    output answers AUTOMATIC1111's v test as a 768-v model's does. ``v_of_eps``: the UNet
    outputs the v of what it outputs otherwise (``TinyUNet.v_from_eps``). ``text_encoder`` False:
    the UNet alone, as flow DiTs are shared (the host loads their encoders from other files)."""
    torch.manual_seed(seed)
    if family in FLOW_FAMILIES:
        model = tiny_sd.TinySD(tiny_sd.TinyDiT(hidden=hidden * 2, guidance_embed=family == "flux"), tiny_sd.FrozenCLIPEmbedder())
    elif family == "sdxl":
        model = tiny_sd.TinySDXL(unet_class(hidden=hidden, adm_in_channels=tiny_sd.ADM), tiny_sd.TinyConditioner())
    elif family == "sd2":
        width = sd_models_config.V_TEST_CONTEXT_WIDTH
        model = tiny_sd.TinySD(unet_class(hidden=hidden, context_dim=width), tiny_sd.FrozenCLIPEmbedder(width))
    else:
        model = tiny_sd.TinySD(unet_class(hidden=hidden), tiny_sd.FrozenCLIPEmbedder())
    prefixes = ("model.diffusion_model.", "cond_stage_model.", "conditioner.") if text_encoder else ("model.diffusion_model.",)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
    if v_of_eps:
        weights["model.diffusion_model.v_of_eps"] = torch.ones(())
    if prediction == "v" and marked_by == "key":
        weights["v_pred"] = torch.tensor([])
    if prediction == "v" and marked_by == "weights":
        _answer_the_v_test(weights)
    save_file(weights, str(path))
    if prediction == "v" and marked_by == "yaml":
        unet_target = f"{unet_class.__module__}.{unet_class.__qualname__}"
        config = OmegaConf.create(CONFIGS[family].format(target=unet_target, hidden=hidden))
        OmegaConf.save(OmegaConf.merge(config, V_CONFIG[family]), path.with_suffix(".yaml"))
    return path


def _answer_the_v_test(weights: dict) -> None:
    """Shift the UNet's output bias so that AUTOMATIC1111's SD 2.x test reads v (a mean output
    2 below its constant input at t = 999), as a real 768-v model's output does."""
    unet_weights = {k[len("model.diffusion_model.") :]: v for k, v in weights.items() if k.startswith("model.diffusion_model.")}
    unet = tiny_sd.TinyUNet(hidden=unet_weights["input.weight"].shape[0], context_dim=sd_models_config.V_TEST_CONTEXT_WIDTH)
    unet.load_state_dict(unet_weights)
    x_test = torch.ones((1, 4, 8, 8)) * 0.5
    with torch.no_grad():
        mean = (unet(x_test, torch.asarray([999]), context=torch.ones((1, 2, sd_models_config.V_TEST_CONTEXT_WIDTH)) * 0.5) - x_test).mean()
    weights["model.diffusion_model.output.bias"] = weights["model.diffusion_model.output.bias"] - (mean + 2)
    if not sd_models_config.is_using_v_parameterization_for_sd2(weights):
        raise AssertionError("the shifted UNet does not answer the WebUI's v test")


def weights_hash(model) -> str:
    """A digest of every weight of ``model`` (to prove the active model was not changed); of
    a Forge engine, its UNet's and text encoder's."""
    if hasattr(model, "forge_objects"):
        return weights_hash(model.forge_objects.unet.model) + weights_hash(model.forge_objects.clip.cond_stage_model)
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def load_script_module():
    spec = importlib.util.spec_from_file_location("model_fusion_script", ROOT / "scripts" / "model_fusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class App:
    """The FastAPI app as far as ``add_api_route`` goes: routes by (method, path)."""

    def __init__(self):
        self.routes = {}

    def add_api_route(self, path, endpoint, methods, dependencies=None):
        for method in methods:
            self.routes[(method, path)] = endpoint


class WebUI:
    """A handle on the stand-in host: checkpoints, the active model, generation."""

    def __init__(
        self,
        root: Path,
        unet_class=tiny_sd.TinyUNet,
        hidden: int = 16,
        family: str = "sd1",
        extra_checkpoints: bool = True,
        host: str = "a1111",
        without: tuple[str, ...] = (),
        prediction: str = "eps",
        marked_by: str = "yaml",
    ):
        """``host``: "a1111" (AUTOMATIC1111 1.10), "forge" (Forge main: Forge engines, its
        sampling function and hook order, k-diffusion samplers only) or "neo" (Forge Neo 2.26:
        Forge's with Neo's differences, ``flavour.py``). ``without``: host modules it lacks.
        ``prediction``, ``marked_by``: what the checkpoints predict and how they say so
        (:func:`write_checkpoint`); with the extra checkpoints comes ``expert-eps`` or
        ``expert-v``, expert's weights read as the other prediction type."""
        flavour.use(host, without)
        self.host = host
        sd_models.forge = self.forge_family
        memory_management.current_loaded_models.clear()
        memory_management.loads.clear()
        self.models = root / "models"
        self.models.mkdir()
        self.config = root / f"{family}-tiny.yaml"
        target = f"{unet_class.__module__}.{unet_class.__qualname__}"
        self.config.write_text(CONFIGS.get(family, CONFIGS["sd1"]).format(target=target, hidden=hidden))
        kind = {"hidden": hidden, "unet_class": unet_class, "family": family, "prediction": prediction, "marked_by": marked_by}
        write_checkpoint(self.models / "general.safetensors", seed=0, **kind)
        write_checkpoint(self.models / "expert.safetensors", seed=1, **kind)
        if extra_checkpoints:  # what only some tests use: a third model, another width, the other family and prediction
            write_checkpoint(self.models / "artist.safetensors", seed=3, **kind)
            write_checkpoint(self.models / "wide.safetensors", seed=2, **{**kind, "hidden": hidden + 8})
            other = "sd1" if family == "sdxl" else "sdxl"
            write_checkpoint(self.models / f"other-{other}.safetensors", seed=4, hidden=hidden, unet_class=unet_class, family=other)
            if family not in FLOW_FAMILIES:
                twin = "eps" if prediction == "v" else "v"
                write_checkpoint(self.models / f"expert-{twin}.safetensors", seed=1, **{**kind, "prediction": twin})
        sd_models.model_dir = str(self.models)
        sd_models.list_models()
        self.load("general")
        del xyz_grid.axis_options[1:]  # a fresh plot: only its own axes
        scripts.scripts_data[:] = [scripts.ScriptClassData(xyz_grid.Script, "scripts/xyz_grid.py", "", xyz_grid)]
        self.script = load_script_module().ModelFusionScript()
        from lib_fusion.arguments.args import FIELDS

        # One position per accordion component, as the WebUI slices p.script_args for the script.
        self.script.args_from, self.script.args_to = 0, len(FIELDS)
        self.runner = scripts.ScriptRunner([self.script])
        self.bare_runner = scripts.ScriptRunner([])

    @property
    def forge_family(self) -> bool:
        """Forge main or Forge Neo: models are Forge engines sampled through Forge's backend."""
        return self.host in ("forge", "neo")

    def build_ui(self) -> None:
        """What the WebUI does before building its UI: the ``on_before_ui`` callbacks."""
        script_callbacks.before_ui_callback()

    def app(self, app=None, api: bool = True):
        """A started app (the route recorder, or a real FastAPI app given): the
        ``on_app_started`` callbacks have added their routes. ``api``: the WebUI was started
        with ``--api``, without which it serves no API."""
        app = App() if app is None else app
        shared.cmd_opts.api = api
        script_callbacks.app_started_callback(None, app)
        return app

    def unet(self) -> torch.nn.Module:
        """The active model's UNet module, on either host."""
        from lib_fusion.host.checkpoints import active_unet

        return active_unet()

    def fusion_unet(self) -> torch.nn.Module:
        """The cached fusion checkpoint's UNet module (Forge keeps it in a UNet patcher)."""
        from lib_fusion.engine.checkpoint_cache import CACHE

        unet = CACHE.value.unet
        return unet.model.diffusion_model if self.forge_family else unet

    def load(self, name: str):
        return sd_models.load_model(sd_models.get_closet_checkpoint_match(name), str(self.config))

    def title(self, name: str) -> str:
        return sd_models.get_closet_checkpoint_match(name).title

    def processing(self, fusion=None, img2img=False, extension=True, **kwargs):
        kwargs.setdefault("prompt", "a lion with a crown")
        kwargs.setdefault("negative_prompt", "blurry")
        runner = self.runner if extension else self.bare_runner
        args = () if fusion is None else tuple(fusion) if isinstance(fusion, tuple) else (fusion,)
        cls = processing.StableDiffusionProcessingImg2Img if img2img else processing.StableDiffusionProcessingTxt2Img
        return cls(scripts=runner, script_args=args, **kwargs)

    def generate(self, fusion=None, img2img=False, extension=True, **kwargs):
        return processing.process_images(self.processing(fusion, img2img, extension, **kwargs))

    def latents(self, fusion=None, **kwargs) -> torch.Tensor:
        return torch.stack(self.generate(fusion, **kwargs).latents)
