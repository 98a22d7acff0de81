"""Stream access control, MediaMTX's side: are its authentication settings the ones that make
it ask camera-service (``POST /mediamtx/auth``) before every session? Pure, no I/O.

MediaMTX's API shows the global settings (``GET /v3/config/global/get``); the daemon reads
them whenever MediaMTX comes up and reports what is wrong in ``/health/mediamtx``
(``stream_auth.problems``) and in the log. Settings that defeat the access control:

* ``authMethod`` other than ``http``: MediaMTX decides alone (its default lets anyone read
  and publish every path);
* ``authHTTPAddress`` not pointing at ``/mediamtx/auth`` on the daemon's HTTP port;
* ``authHTTPExclude`` entries: those actions skip the daemon entirely;
* ``digest`` in ``rtspAuthMethods``: RTSP passwords no longer reach the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

AUTH_ROUTE = "/mediamtx/auth"


def auth_settings_problems(conf: Mapping[str, Any], http_port: int | None) -> list[str]:
    """What in MediaMTX's global configuration keeps camera-service from deciding access."""
    problems: list[str] = []
    method = conf.get("authMethod")
    if method != "http":
        problems.append(
            f"authMethod is {method!r}, not 'http': MediaMTX does not ask camera-service"
        )
    address = conf.get("authHTTPAddress") or ""
    parts = urlsplit(address) if isinstance(address, str) else None
    if parts is None or parts.path != AUTH_ROUTE:
        problems.append(f"authHTTPAddress {address!r} does not point at {AUTH_ROUTE}")
    elif http_port is not None and parts.port != http_port:
        problems.append(f"authHTTPAddress {address!r} is not on the daemon's HTTP port {http_port}")
    exclude = conf.get("authHTTPExclude") or []
    if exclude:
        actions = sorted({str(e.get("action")) for e in exclude if isinstance(e, Mapping)})
        problems.append(f"authHTTPExclude lets {', '.join(actions)} through unchecked")
    if "digest" in (conf.get("rtspAuthMethods") or []):
        problems.append("rtspAuthMethods includes digest: RTSP passwords cannot be checked")
    return problems
