"""HTTP routes of the extension, added to the WebUI's FastAPI app (``on_app_started``)."""

from __future__ import annotations

from typing import Any

from lib_fusion import __version__, host
from lib_fusion.args import FusionArgs

PREFIX = "/model-fusion/v1"


def register(app: Any) -> None:
    """Add the routes to ``app`` (FastAPI's ``add_api_route``)."""
    app.add_api_route(f"{PREFIX}/schema", schema, methods=["GET"])
    app.add_api_route(f"{PREFIX}/version", version, methods=["GET"])
    app.add_api_route(f"{PREFIX}/models", models, methods=["GET"])
    app.add_api_route(f"{PREFIX}/unload", unload, methods=["POST"])


def schema() -> dict[str, Any]:
    """JSON schema of the argument dict sent in ``alwayson_scripts["model fusion"]["args"][0]``."""
    return FusionArgs.schema()


def version() -> dict[str, str]:
    return {"version": __version__, "api": "v1"}


def models() -> dict[str, Any]:
    """The WebUI's checkpoints, each marked usable (same family as the active one) or not,
    with why; and the fusion checkpoint now loaded, with how long its load took."""
    return {"checkpoints": host.checkpoint_report(), "loaded": host.loaded_report()}


def unload() -> dict[str, bool]:
    """Free the cached fusion checkpoint; ``unloaded`` says whether one was held."""
    return {"unloaded": host.unload()}
