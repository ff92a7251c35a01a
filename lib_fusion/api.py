"""HTTP routes of the extension, added to the WebUI's FastAPI app (``on_app_started``)."""

from __future__ import annotations

from typing import Any

from lib_fusion import host

PREFIX = "/model-fusion/v1"


def register(app: Any) -> None:
    """Add the routes to ``app`` (FastAPI's ``add_api_route``)."""
    app.add_api_route(f"{PREFIX}/unload", unload, methods=["POST"])


def unload() -> dict[str, bool]:
    """Free the cached fusion checkpoint; ``unloaded`` says whether one was held."""
    return {"unloaded": host.unload()}
