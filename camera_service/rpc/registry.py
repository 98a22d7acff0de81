"""Method registry: each method declared once with its params model, result type, role and doc.

The registry drives dispatch (lookup, role check, params validation), the OpenRPC document
served by `rpc.discover`, the method table in docs/api.md, and the generated auth-matrix tests.

A group of methods can be registered lazily (:meth:`Registry.add_lazy`): its names are known
from the start and its loader (which imports the handler module and registers the methods)
runs at the first lookup of one of them, or when the whole list is needed (`rpc.discover`,
the docs). Calls, errors and the OpenRPC document are the same either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from camera_service import API_VERSION, __version__
from camera_service.auth.roles import Role
from camera_service.rpc.protocol import encode

if TYPE_CHECKING:
    from camera_service.rpc.session import CallContext

Handler = Callable[["CallContext", Any], Awaitable[Any]]


class Params(BaseModel):
    """Base of every params model: by-name members only, unknown members are errors.

    Built on first use (`defer_build`): the validator and schema of a method nobody calls
    cost memory on every node, so pydantic builds them at its first call or `rpc.discover`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class NoParams(Params):
    pass


class Result(BaseModel):
    """Base of result models; extra members allowed so results can grow compatibly. Built on
    first use, like `Params`."""

    model_config = ConfigDict(extra="allow", defer_build=True)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    handler: Handler
    params: type[Params]
    result: Any
    role: Role | None
    doc: str
    audited: bool
    inline: bool  # never awaits I/O: run in the connection's read loop, no task of its own
    param_names: frozenset[str] = frozenset()  # the params model's fields, looked up per call

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


@dataclass(frozen=True, slots=True)
class LazyGroup:
    """Methods whose handler module is imported when one of them is first looked up."""

    label: str
    names: frozenset[str]
    load: Callable[[Registry], None]  # registers exactly `names` on the registry


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {}
        self._pending: dict[str, LazyGroup] = {}
        self._openrpc_text: str | None = None

    def add_lazy(self, label: str, names: Iterable[str], load: Callable[[Registry], None]) -> None:
        """Declare methods that `load` registers at the first lookup of one of them."""
        group = LazyGroup(label, frozenset(names), load)
        for name in group.names:
            if name in self._methods or name in self._pending:
                raise ValueError(f"method {name} registered twice")
        self._pending.update(dict.fromkeys(group.names, group))
        self._openrpc_text = None

    def _load(self, group: LazyGroup) -> None:
        for name in group.names:
            del self._pending[name]
        before = set(self._methods)
        group.load(self)
        added = set(self._methods) - before
        if added != group.names:
            raise RuntimeError(
                f"lazy method group {group.label} registered {sorted(added)}, "
                f"declared {sorted(group.names)}"
            )

    def load_all(self) -> None:
        """Import every lazily registered group (what needs the whole list calls this)."""
        while self._pending:
            self._load(next(iter(self._pending.values())))

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        params: type[Params] = NoParams,
        result: Any,
        role: Role | None,
        doc: str | None = None,
        inline: bool = False,
    ) -> MethodSpec:
        if name in self._methods or name in self._pending:
            raise ValueError(f"method {name} registered twice")
        description = doc if doc is not None else inspect.getdoc(handler) or ""
        if not description.strip():
            raise ValueError(f"method {name} has no documentation")
        audited = role is not None and role >= Role.OPERATOR
        spec = MethodSpec(
            name,
            handler,
            params,
            result,
            role,
            description,
            audited,
            inline,
            frozenset(params.model_fields),
        )
        self._methods[name] = spec
        self._openrpc_text = None
        return spec

    def method(
        self,
        name: str,
        *,
        params: type[Params] = NoParams,
        result: Any,
        role: Role | None,
        inline: bool = False,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(name, handler, params=params, result=result, role=role, inline=inline)
            return handler

        return decorate

    def get(self, name: str) -> MethodSpec | None:
        spec = self._methods.get(name)
        if spec is None and name in self._pending:
            self._load(self._pending[name])
            spec = self._methods.get(name)
        return spec

    def __iter__(self) -> Iterator[MethodSpec]:
        self.load_all()
        return iter(sorted(self._methods.values(), key=lambda spec: spec.name))

    def __len__(self) -> int:
        return len(self._methods) + len(self._pending)

    def names(self) -> list[str]:
        return sorted([*self._methods, *self._pending])

    def openrpc_text(self) -> str:
        """The OpenRPC document as JSON text, built once (methods are registered at start)."""
        if self._openrpc_text is None:
            self.load_all()
            self._openrpc_text = encode(openrpc_document(self))
        return self._openrpc_text


REF_TEMPLATE = "#/components/schemas/{model}"


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(tp).json_schema(ref_template=REF_TEMPLATE)
    defs.update(schema.pop("$defs", {}))
    return schema


def _params_doc(spec: MethodSpec, defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _schema(spec.params, defs)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        entry: dict[str, Any] = {"name": name, "required": name in required, "schema": prop}
        if "description" in prop:
            entry["description"] = prop["description"]
        params.append(entry)
    return params


def openrpc_document(registry: Registry) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    methods = []
    for spec in registry:
        methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "description": spec.doc,
                "paramStructure": "by-name",
                "params": _params_doc(spec, defs),
                "result": {"name": f"{spec.name}_result", "schema": _schema(spec.result, defs)},
                "x-required-role": spec.role.label if spec.role else None,
            }
        )
    return {
        "openrpc": "1.2.6",
        "info": {
            "title": "camera-service JSON-RPC API",
            "version": __version__,
            "x-api-version": API_VERSION,
        },
        "methods": methods,
        "components": {"schemas": defs},
    }
