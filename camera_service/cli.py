"""Command line: `camera-service run | demo | keys … | token … | config check|schema`."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camera_service import __version__, eventloop
from camera_service import logging as service_logging
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.jwt import JwtAuthority
from camera_service.auth.roles import ROLE_NAMES, Role
from camera_service.config import Config, ConfigError, json_schema, load_config, redacted

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = logging.getLogger("camera_service")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `24h`, `7d` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 3600, 15m, 24h, 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_CONFIG_OPTION = argparse.ArgumentParser(add_help=False)
_CONFIG_OPTION.add_argument(
    "--config", "-c", default=argparse.SUPPRESS, help="config file (default: lookup order)"
)


def _accept_config_anywhere(sub: Any) -> None:
    """Let `--config` follow a subcommand too (`camera-service run --config FILE`)."""
    original = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = original(name, parents=[_CONFIG_OPTION], **kwargs)
        return parser

    sub.add_parser = add_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camera-service", description=__doc__)
    parser.add_argument("--version", action="version", version=f"camera-service {__version__}")
    parser.add_argument("--config", "-c", help="config file (default: lookup order)")
    sub = parser.add_subparsers(dest="command", required=True)
    _accept_config_anywhere(sub)

    sub.add_parser("run", help="run the daemon")
    demo = sub.add_parser("demo", help="run with a synthetic test-pattern camera")
    demo.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    demo.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    demo.add_argument("--ws-port", type=int, default=8002)
    demo.add_argument("--http-port", type=int, default=8003)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    _accept_config_anywhere(keys)
    create = keys.add_parser("create", help="create a key (printed once)")
    create.add_argument("--role", type=_role, required=True, help="/".join(ROLE_NAMES))
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--json", action="store_true", help="machine-readable output")
    listing = keys.add_parser("list", help="list keys (never the key itself)")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key; open connections lose it")
    revoke.add_argument("key_id")

    token = sub.add_parser("token", help="issue a JWT")
    token.add_argument("--role", type=_role, required=True)
    token.add_argument("--user", required=True)
    token.add_argument(
        "--ttl", type=parse_duration, default=None, help="e.g. 24h (default: config)"
    )

    config = sub.add_parser("config", help="check or describe the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    _accept_config_anywhere(config_sub)
    config_sub.add_parser("check", help="validate and print the effective configuration")
    config_sub.add_parser("schema", help="print the JSON Schema of the configuration")
    return parser


def _load(
    args: argparse.Namespace, overrides: dict[str, Any] | None = None
) -> tuple[Config, Path | None]:
    return load_config(args.config, overrides=overrides)


def cmd_keys(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    store = ApiKeyStore(config.api_keys_file)
    if args.keys_command == "create":
        key, record = store.create(args.name, args.role)
        if args.json:
            print(json.dumps({"key": key, **record.public()}))
        else:
            print(f"id:   {record.id}\nname: {record.name}\nrole: {record.role}\nkey:  {key}")
            print("Store the key now: it is not shown again.", file=sys.stderr)
        return EXIT_OK
    if args.keys_command == "list":
        records = [r.public() for r in store.list()]
        if args.json:
            print(json.dumps(records, indent=2))
        else:
            for r in records:
                state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                print(f"{r['id']}  {r['role']:<8}  {r['created_at']}  {state:<28}  {r['name']}")
        return EXIT_OK
    try:
        record = store.revoke(args.key_id)
    except KeyError:
        print(f"no API key with id {args.key_id}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"revoked {record.id} ({record.name}) at {record.revoked_at}")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from camera_service.app import secret_bytes

    config, _ = _load(args)
    config.storage.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ttl = args.ttl if args.ttl is not None else config.auth.token_ttl
    print(JwtAuthority(secret_bytes(config)).issue(args.user, args.role, ttl))
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    config, path = _load(args)
    print(
        json.dumps(
            {"source": str(path) if path else "defaults", "config": redacted(config)}, indent=2
        )
    )
    return EXIT_OK


def cmd_run(
    args: argparse.Namespace, overrides: dict[str, Any] | None = None, banner: Any = None
) -> int:
    from camera_service.app import Application, StartupError

    config, path = _load(args, overrides)
    service_logging.configure(config.logging.level, config.logging.format)

    async def main() -> None:
        app = Application(config, path)
        if banner is not None:
            app.after_start.append(lambda: banner(app))
        await app.run()

    try:
        eventloop.run(main(), config.server.event_loop)
    except (StartupError, eventloop.EventLoopUnavailable) as exc:
        log.error(str(exc))
        return EXIT_FAILURE
    return EXIT_OK


def demo_overrides(args: argparse.Namespace) -> dict[str, Any]:
    base = args.dir or Path(tempfile.mkdtemp(prefix="camera-service-demo-"))
    return {
        "server": {"host": args.host, "port": args.ws_port},
        "http": {"host": args.host, "port": args.http_port},
        "storage": {
            "recordings_dir": str(base / "recordings"),
            "snapshots_dir": str(base / "snapshots"),
            "state_dir": str(base / "state"),
        },
        "cameras": {
            "discovery": "off",
            "sources": [
                {
                    "id": "demo0",
                    "name": "Demo test pattern",
                    "input_format": "lavfi",
                    "input": "testsrc2=size=640x480:rate=15",
                    "exclusive": True,
                }
            ],
        },
        "mediamtx": {"enabled": False},
        "logging": {"format": "text"},
    }


def demo_banner(app: Any) -> None:
    store: ApiKeyStore = app.keys
    key, _ = store.create("demo-admin", Role.ADMIN)
    host = app.config.http.host
    lines = [
        "",
        "camera-service demo is running",
        f"  browser client : http://{host}:{app.http.port}/",
        f"  JSON-RPC       : ws://{host}:{app.ws.port}{app.config.server.path}",
        f"  health         : http://{host}:{app.http.port}/health",
        f"  data directory : {app.config.storage.state_dir.parent}",
        f"  admin API key  : {key}",
        "Press Ctrl+C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "demo":
            return cmd_run(args, demo_overrides(args), banner=demo_banner)
        if args.command == "keys":
            return cmd_keys(args)
        if args.command == "token":
            return cmd_token(args)
        return cmd_config(args)
    except ConfigError as exc:
        print(f"camera-service: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, ValueError) as exc:
        print(f"camera-service: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
