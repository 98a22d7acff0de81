"""The MediaMTX OpenAPI document and reference ``mediamtx.yml`` for the fake and the tests.

* :func:`load_spec` / :class:`SpecValidator`: request and response bodies checked against
  the component schemas of ``shared/reference/mediamtx-openapi.yaml`` (``$ref``\\s resolved
  inside the document; with ``forbid_unknown_fields`` every object schema is closed, as
  MediaMTX decodes bodies with unknown fields forbidden, ``conf/jsonwrapper``).
* :func:`_path_defaults`: a PathConf as MediaMTX echoes it, defaults from ``pathDefaults``
  of the reference ``mediamtx.yml``.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

_REPO = Path(__file__).resolve().parents[2]
# The project's shared reference wins; the copy in tests/support/reference keeps the suite
# runnable from a lone checkout of this repository.
_SPEC_CANDIDATES = (
    _REPO.parent / "shared" / "reference" / "mediamtx-openapi.yaml",
    _REPO / "tests" / "support" / "reference" / "mediamtx-openapi.yaml",
)
_CONF_CANDIDATES = (
    _REPO.parent / "shared" / "reference" / "mediamtx.yml",
    _REPO / "tests" / "support" / "reference" / "mediamtx.yml",
)

Json = dict[str, Any]


def find_reference(env_var: str, candidates: Iterable[Path]) -> Path:
    """First existing file among ``$env_var`` and ``candidates``."""
    env = os.environ.get(env_var)
    paths = [Path(env)] if env else []
    paths.extend(candidates)
    for path in paths:
        if path.is_file():
            return path
    raise FileNotFoundError(f"none of {[str(p) for p in paths]} exists (set ${env_var})")


def spec_path() -> Path:
    return find_reference("MEDIAMTX_OPENAPI_SPEC", _SPEC_CANDIDATES)


@functools.lru_cache(maxsize=4)
def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_spec(path: Path | None = None) -> Json:
    """The parsed OpenAPI document (cached and shared: do not mutate it)."""
    return cast(Json, _load_yaml(path or spec_path()))


def _close_object_schemas(node: Any) -> None:
    """Add ``additionalProperties: false`` to every object schema that lists properties."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            _close_object_schemas(value)


class SpecValidator:
    """Validates JSON documents against the spec's component schemas."""

    def __init__(self, spec: Json, *, forbid_unknown_fields: bool = True) -> None:
        self.spec = spec
        components = copy.deepcopy(spec["components"])
        if forbid_unknown_fields:
            _close_object_schemas(components["schemas"])
        self._components = components
        self._validators: dict[str, OAS30Validator] = {}

    def _validator(self, ref: str) -> OAS30Validator:
        if ref not in self._validators:
            schema = {"$ref": ref, "components": self._components}
            self._validators[ref] = OAS30Validator(schema, format_checker=oas30_format_checker)
        return self._validators[ref]

    def errors(self, ref: str, document: Any) -> list[str]:
        """Messages for every violation of schema ``ref`` (e.g. ``#/components/schemas/X``)."""
        found = sorted(self._validator(ref).iter_errors(document), key=lambda e: list(e.path))
        return [f"{'/'.join(str(p) for p in err.path) or '<body>'}: {err.message}" for err in found]

    def schema_errors(self, name: str, document: Any) -> list[str]:
        return self.errors(f"#/components/schemas/{name}", document)

    def request_body_ref(self, route: str, method: str) -> str | None:
        """The ``$ref`` of the JSON request body of an operation, None if it takes none."""
        op = self.spec["paths"][route][method.lower()]
        body = op.get("requestBody")
        if body is None:
            return None
        return cast(str, body["content"]["application/json"]["schema"]["$ref"])


def _path_defaults(spec: Json) -> Json:
    """Default PathConf as MediaMTX would echo it, from the reference ``mediamtx.yml``."""
    props: Json = spec["components"]["schemas"]["PathConf"]["properties"]
    try:
        conf_file = find_reference("MEDIAMTX_REFERENCE_CONF", _CONF_CANDIDATES)
        from_file: Json = _load_yaml(conf_file).get("pathDefaults") or {}
    except FileNotFoundError:
        from_file = {"source": "publisher", "record": False, "recordFormat": "fmp4"}
    defaults: Json = {}
    for key, prop in props.items():
        value = from_file.get(key)
        if value is None:
            if prop.get("nullable"):
                defaults[key] = None
            elif prop.get("type") == "string":
                defaults[key] = ""
            elif prop.get("type") == "array":
                defaults[key] = []
            continue
        defaults[key] = copy.deepcopy(value)
    return defaults
