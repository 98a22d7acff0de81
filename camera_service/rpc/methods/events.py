"""Event subscription methods."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from camera_service.auth.roles import Role
from camera_service.cameras.model import CAMERA_ID_RE, MAX_CAMERAS
from camera_service.events import TOPICS, EventBus, valid_pattern
from camera_service.rpc.registry import NoParams, Params, Registry, Result
from camera_service.rpc.session import CallContext


def _check_topics(topics: list[str] | None) -> list[str] | None:
    if topics is None:
        return None
    bad = [t for t in topics if not valid_pattern(t)]
    if bad:
        raise ValueError(
            f"unknown topic {bad[0]!r}; use one of {', '.join(TOPICS)}, '<family>.*' or '*'"
        )
    return topics


class SubscribeFilters(Params):
    device: Annotated[list[str], Field(max_length=MAX_CAMERAS)] | str | None = Field(
        None, description=f"Only events of these cameras (at most {MAX_CAMERAS} ids)"
    )

    def devices(self) -> list[str] | None:
        if self.device is None:
            return None
        return [self.device] if isinstance(self.device, str) else list(self.device)

    @field_validator("device")
    @classmethod
    def _valid_devices(cls, value: list[str] | str | None) -> list[str] | str | None:
        values = [value] if isinstance(value, str) else (value or [])
        for item in values:
            if not CAMERA_ID_RE.match(item):
                raise ValueError(f"malformed camera id {item!r}")
        return value


class SubscribeParams(Params):
    topics: list[str] = Field(..., min_length=1, max_length=len(TOPICS) + 4)
    filters: SubscribeFilters | None = None

    _topics = field_validator("topics")(_check_topics)


class UnsubscribeParams(Params):
    topics: list[str] | None = Field(None, max_length=len(TOPICS) + 4)

    _topics = field_validator("topics")(_check_topics)


class SubscribeResult(Result):
    subscribed: bool
    topics: list[str]
    filters: dict[str, list[str]]


class UnsubscribeResult(Result):
    unsubscribed: bool
    topics: list[str]


class SubscriptionStats(Result):
    global_stats: dict[str, object]
    client_topics: list[str]
    client_id: str


def register(registry: Registry, bus: EventBus) -> None:
    @registry.method(
        "subscribe_events",
        params=SubscribeParams,
        result=SubscribeResult,
        role=Role.VIEWER,
        inline=True,
    )
    async def subscribe_events(ctx: CallContext, params: SubscribeParams) -> SubscribeResult:
        """Add topics (and optionally a device filter) to this connection's subscriptions."""
        devices = params.filters.devices() if params.filters else None
        bus.subscribe(ctx.session, params.topics, devices)
        sid = ctx.session.subscriber_id
        return SubscribeResult(
            subscribed=True, topics=bus.topics_of(sid), filters=bus.filters_of(sid)
        )

    @registry.method(
        "unsubscribe_events",
        params=UnsubscribeParams,
        result=UnsubscribeResult,
        role=Role.VIEWER,
        inline=True,
    )
    async def unsubscribe_events(ctx: CallContext, params: UnsubscribeParams) -> UnsubscribeResult:
        """Remove the given topics, or every subscription when topics is absent."""
        removed = bus.unsubscribe(ctx.session.subscriber_id, params.topics)
        return UnsubscribeResult(unsubscribed=True, topics=sorted(removed))

    @registry.method(
        "get_subscription_stats", result=SubscriptionStats, role=Role.VIEWER, inline=True
    )
    async def get_subscription_stats(ctx: CallContext, params: NoParams) -> SubscriptionStats:
        """Global subscription counts and this connection's topics."""
        sid = ctx.session.subscriber_id
        return SubscriptionStats(
            global_stats=bus.stats(), client_topics=bus.topics_of(sid), client_id=sid
        )
