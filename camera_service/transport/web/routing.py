"""Routes of the HTTP server, resolved as aiohttp's router resolved them. No I/O.

Paths are exact, or have `{name}` segments matching one path segment (its percent-decoded
text lands in `match_info`, so an encoded slash stays inside the segment). A GET route
answers HEAD too. Routes are tried in the order they were added; a path some route has
but not for this method gets 405 with `Allow`, no route at all 404. A static route serves
the regular files of a directory under a prefix (GET/HEAD), see `files.resolve_static`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from camera_service.transport.web.errors import HTTPMethodNotAllowed, HTTPNotFound
from camera_service.transport.web.files import FileResponse, resolve_static
from camera_service.transport.web.messages import Request, StreamResponse

Handler = Callable[[Request], Awaitable[StreamResponse]]


def split_path(raw_path: str) -> list[str]:
    """Percent-decoded segments of a raw path (`/a%2Fb/c` → `["a/b", "c"]`)."""
    return [unquote(seg) for seg in raw_path[1:].split("/")]


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    parts: tuple[str, ...]  # literal segments, or "{name}"
    handler: Handler

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        found: dict[str, str] = {}
        for part, seg in zip(self.parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not seg:
                    return None
                found[part[1:-1]] = seg
            elif part != seg:
                return None
        return found


@dataclass(frozen=True, slots=True)
class StaticRoute:
    prefix: tuple[str, ...]
    directory: Path

    def match(self, segments: list[str]) -> list[str] | None:
        n = len(self.prefix)
        if len(segments) <= n or list(self.prefix) != segments[:n]:
            return None
        return segments[n:]

    async def handle(self, rest: list[str]) -> StreamResponse:
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, resolve_static, self.directory, rest)
        return FileResponse(path)


@dataclass
class Router:
    routes: list[Route | StaticRoute] = field(default_factory=list)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        methods = {method.upper()}
        if "GET" in methods:
            methods.add("HEAD")
        self.routes.append(Route(frozenset(methods), tuple(path[1:].split("/")), handler))

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_static(
        self,
        prefix: str,
        directory: Path,
        *,
        show_index: bool = False,
        follow_symlinks: bool = False,
    ) -> None:
        if show_index or follow_symlinks:
            raise ValueError("static routes list no directories and follow no symlinks")
        parts = tuple(seg for seg in prefix.strip("/").split("/") if seg)
        self.routes.append(StaticRoute(parts, directory.resolve()))

    def resolve(self, request: Request) -> Handler:
        """The handler for `request` (its `match_info` filled), or 404 / 405."""
        segments = split_path(request.raw_path)
        allowed: set[str] = set()
        for route in self.routes:
            if isinstance(route, StaticRoute):
                rest = route.match(segments)
                if rest is None:
                    continue
                if request.method not in ("GET", "HEAD"):
                    allowed |= {"GET", "HEAD"}
                    continue
                return _static_handler(route, rest)
            found = route.match(segments)
            if found is None:
                continue
            if request.method not in route.methods:
                allowed |= route.methods
                continue
            request.match_info = found
            return route.handler
        if allowed:
            raise HTTPMethodNotAllowed(request.method, allowed)
        raise HTTPNotFound()


def _static_handler(route: StaticRoute, rest: list[str]) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        return await route.handle(rest)

    return handler


class Application:
    """What the components add their routes to (`app.router.add_get(...)`)."""

    def __init__(self) -> None:
        self.router = Router()
