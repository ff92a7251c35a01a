"""Calls to a running WebUI's API, timed, for the benchmarks' ``--url`` modes."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


def call(url: str, path: str, body: dict[str, Any] | None = None) -> tuple[float, Any]:
    """Seconds the call took and its JSON answer (POST when ``body`` is given, else GET)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
    start = time.perf_counter()
    answer = json.load(urllib.request.urlopen(request, timeout=3600))
    return time.perf_counter() - start, answer
