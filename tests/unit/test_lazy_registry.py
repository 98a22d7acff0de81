"""Registry.add_lazy: a group's loader runs at the first lookup of one of its methods (or
when the whole list is needed), registers exactly the declared names, and the methods then
behave as if registered at start."""

from __future__ import annotations

from typing import Any

import pytest

from camera_service.auth.roles import Role
from camera_service.rpc.registry import Params, Registry


class EchoParams(Params):
    text: str


async def _echo(ctx: Any, params: EchoParams) -> str:
    """Echo the text back."""
    return params.text


async def _pong(ctx: Any, params: Any) -> str:
    """Answer pong."""
    return "pong"


def _loader(loads: list[str], names: tuple[str, ...] = ("echo", "pong")) -> Any:
    def load(registry: Registry) -> None:
        loads.append("loaded")
        if "echo" in names:
            registry.add("echo", _echo, params=EchoParams, result=str, role=Role.VIEWER)
        if "pong" in names:
            registry.add("pong", _pong, result=str, role=None, inline=True)

    return load


def test_the_group_loads_at_the_first_lookup_of_one_of_its_methods() -> None:
    registry, loads = Registry(), []
    registry.add_lazy("demo", ["echo", "pong"], _loader(loads))
    assert registry.names() == ["echo", "pong"]
    assert len(registry) == 2
    assert registry.get("unknown") is None
    assert loads == []
    spec = registry.get("pong")
    assert spec is not None and spec.inline and spec.role is None
    assert loads == ["loaded"]
    echo = registry.get("echo")
    assert echo is not None and echo.params is EchoParams and echo.param_names == {"text"}
    assert loads == ["loaded"]  # once


def test_iterating_and_the_openrpc_document_load_every_group() -> None:
    eager, lazy, loads = Registry(), Registry(), []
    _loader([])(eager)
    lazy.add_lazy("demo", ["echo", "pong"], _loader(loads))
    assert [spec.name for spec in lazy] == ["echo", "pong"]
    assert loads == ["loaded"]
    assert lazy.openrpc_text() == eager.openrpc_text()


def test_the_openrpc_document_is_the_same_built_before_any_call() -> None:
    eager, lazy = Registry(), Registry()
    _loader([])(eager)
    lazy.add_lazy("demo", ["echo", "pong"], _loader([]))
    assert lazy.openrpc_text() == eager.openrpc_text()


def test_a_loader_that_registers_other_names_than_declared_is_an_error() -> None:
    registry = Registry()
    registry.add_lazy("demo", ["echo", "pong", "missing"], _loader([]))
    with pytest.raises(RuntimeError, match="lazy method group demo registered"):
        registry.get("echo")


def test_a_lazily_declared_name_cannot_be_registered_twice() -> None:
    registry = Registry()
    registry.add_lazy("demo", ["echo"], _loader([], ("echo",)))
    with pytest.raises(ValueError, match="method echo registered twice"):
        registry.add("echo", _echo, params=EchoParams, result=str, role=Role.VIEWER)
    with pytest.raises(ValueError, match="method echo registered twice"):
        registry.add_lazy("again", ["echo"], _loader([], ("echo",)))
