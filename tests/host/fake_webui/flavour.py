"""Which WebUI the stand-in plays: AUTOMATIC1111 1.10 (``a1111``), Forge main (``forge``) or
Forge Neo 2.26 (``neo``).

Forge and Neo share the stand-in's ``backend``; Neo differs where the extension meets it, as
read from Neo 2.26's own sources (``exo101/sd-webui-forge-neo-v3`` ``webui/``):

- modules it removed: ``sd_hijack``, ``sd_hijack_clip``, ``sd_disable_initialization``,
  ``sd_models_xl``, ``lowvram`` (importing one fails);
- ``backend.args.dynamic_args`` is a class whose metaclass answers item access, not a dict,
  and ``forge_loader`` resets it and sets flags from the loaded file's name;
- ``prompt_parser.get_learned_conditioning`` / ``get_multicond_learned_conditioning`` take
  ``(model, prompts, steps, hires_steps=None)``: no ``use_old_scheduling``;
- ``sampling_function(..., extra_model_options=None)`` joins the patcher's options with the
  sampler's into a new dict, and the post-CFG functions' arguments carry ``cond_scale``;
- its UNet patcher (re-ported from ComfyUI) copies ``model_options`` with ``utils.deepcopy_``
  (dicts and lists copied, everything else shared) and remembers its ``parent``.
"""

import importlib
import sys

from backend import args
from modules import prompt_parser

HOST = "a1111"

NEO_REMOVED = ("sd_hijack", "sd_hijack_clip", "sd_disable_initialization", "sd_models_xl", "lowvram")
"""``modules.*`` the stand-in has that Neo 2.26 removed."""

_kept_modules: dict[str, object] = {}
_hidden: set[str] = set()


def neo() -> bool:
    return HOST == "neo"


def use(host: str, without: tuple[str, ...] = ()) -> None:
    """Play ``host`` from now on (each stand-in WebUI calls it as it starts); ``without``:
    further modules (``modules.x``, ``backend.x``) this host lacks. The stand-in's own modules
    keep what they imported: only a fresh import of a hidden module fails."""
    global HOST
    if host not in ("a1111", "forge", "neo"):
        raise ValueError(f"unknown stand-in host {host!r}")
    HOST = host
    for full in _hidden:  # what the previous stand-in lacked is back
        _show(full)
    _hidden.clear()
    for full in [*(f"modules.{name}" for name in NEO_REMOVED if neo()), *without]:
        _hide(full)
    args.dynamic_args = args.neo_dynamic_args() if neo() else args.forge_dynamic_args()
    prompt_parser.use_signatures(neo())


def _hide(full: str) -> None:
    if full not in _kept_modules:  # imported once, before it is ever hidden (None: the stand-in has none)
        try:
            _kept_modules[full] = importlib.import_module(full)
        except ImportError:
            _kept_modules[full] = None
    sys.modules[full] = None  # "import of modules.x halted": as absent as a removed file
    package, _, name = full.rpartition(".")
    sys.modules[package].__dict__.pop(name, None)
    _hidden.add(full)


def _show(full: str) -> None:
    module = _kept_modules[full]
    if module is None:
        del sys.modules[full]
        return
    sys.modules[full] = module
    package, _, name = full.rpartition(".")
    setattr(sys.modules[package], name, module)
