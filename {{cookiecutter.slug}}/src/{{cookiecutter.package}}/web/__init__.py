"""The `web` process type: the ASGI app, its middleware and the HTTP API."""
