"""WebUI install hook: the extension needs nothing the WebUI does not already ship."""
