"""HTTP routes of the extension, added to the WebUI's FastAPI app (``on_app_started``).

FastAPI reads the auth dependency's annotations from this module's globals (they are text
under ``from __future__ import annotations``), so its types are imported at the top."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from lib_fusion import __version__, host
from lib_fusion.arguments.args import FusionArgs

PREFIX = "/model-fusion/v1"


def register(app: Any) -> None:
    """Add the routes to ``app`` (FastAPI's ``add_api_route``), on the terms of the WebUI's
    own API: only where it serves one (``--api``, ``--nowebui``), and behind the same HTTP
    basic credentials when ``--api-auth`` is set (``modules/api/api.py``: ``Api.add_api_route``
    adds ``Depends(self.auth)`` to every route then)."""
    serves_api, api_auth = host.api_access()
    if not serves_api:
        return
    dependencies = [basic_auth(credentials(api_auth))] if api_auth else []
    for path, endpoint, method in (
        ("schema", schema, "GET"),
        ("version", version, "GET"),
        ("models", models, "GET"),
        ("unload", unload, "POST"),
    ):
        app.add_api_route(f"{PREFIX}/{path}", endpoint, methods=[method], dependencies=dependencies)


def credentials(api_auth: str) -> dict[str, str]:
    """``--api-auth user:password,user2:password2`` as the WebUI reads it."""
    users = {}
    for pair in api_auth.split(","):
        user, _, password = pair.partition(":")
        users[user] = password
    return users


def basic_auth(users: dict[str, str]) -> Any:
    """A FastAPI dependency answering 401 with ``WWW-Authenticate: Basic`` unless the request
    carries one of ``users``' name and password; the password is compared in constant time
    (``secrets.compare_digest``, as the WebUI's ``Api.auth``)."""

    def check(given: HTTPBasicCredentials | None = Depends(HTTPBasic(auto_error=False))) -> None:  # noqa: B008 (FastAPI's idiom)
        if given is not None:
            expected = users.get(given.username)
            # Compared for an unknown user too, so the time taken does not tell which users exist.
            matches = secrets.compare_digest(given.password.encode(), (expected or "").encode())
            if expected is not None and matches:
                return
        raise HTTPException(status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    return Depends(check)


def schema() -> dict[str, Any]:
    """JSON schema of the argument dict sent in ``alwayson_scripts["model fusion"]["args"][0]``."""
    return FusionArgs.schema()


def version() -> dict[str, str]:
    return {"version": __version__, "api": "v1"}


def models() -> dict[str, Any]:
    """The WebUI's checkpoints, each marked usable (same family as the active one) or not,
    with why; and the fusion checkpoint now loaded, with how long its load took."""
    problem = host.unsupported_host()
    if problem is not None:
        raise HTTPException(status_code=501, detail=problem)
    return {"checkpoints": host.checkpoint_report(), "loaded": host.loaded_report()}


def unload() -> dict[str, bool]:
    """Free the cached fusion checkpoint; ``unloaded`` says whether one was held."""
    return {"unloaded": host.unload()}
