"""The HTTP server's start: the browser client's routes and where it finds the WebSocket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camera_service.transport import web

if TYPE_CHECKING:
    from camera_service.app import Application


async def start_http(app: Application) -> None:
    async def client_config(request: web.Request) -> web.Response:
        """Where the browser client finds the WebSocket (it is served from the HTTP port)."""
        return web.json_response(
            {
                "ws_port": app.ws.port,
                "ws_path": app.config.server.path,
                "tls": app.config.server.tls.enabled,
            }
        )

    app.http.app.router.add_get("/client-config.json", client_config)
    app.http.add_client_routes()
    await app.http.start()
