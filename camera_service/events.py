"""In-process event bus: typed topics, pattern matching, fan-out to bounded per-subscriber queues.

An event is encoded to its JSON-RPC notification text once and handed to every matching
subscriber without awaiting: a subscriber that cannot take it (full queue) deals with that on
its own (the WebSocket session closes with 1013), so one slow client never delays the others.
Internal components can listen with `add_listener` (called synchronously with the event).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from camera_service.rpc.protocol import encode, notification

log = logging.getLogger(__name__)

TOPICS = (
    "camera.connected",
    "camera.disconnected",
    "camera.status_change",
    "camera.controls",
    "recording.start",
    "recording.stop",
    "recording.error",
    "snapshot.taken",
    "motion.start",
    "motion.end",
    "system.health",
    "system.startup",
    "system.shutdown",
)
DEFAULT_TOPICS = ("camera.*", "recording.*")
_FAMILIES = {topic.split(".")[0] for topic in TOPICS}


def valid_pattern(pattern: str) -> bool:
    """A pattern is a topic, `<family>.*` or `*`."""
    if pattern == "*" or pattern in TOPICS:
        return True
    family, _, rest = pattern.partition(".")
    return rest == "*" and family in _FAMILIES


def matches(pattern: str, topic: str) -> bool:
    if pattern == "*" or pattern == topic:
        return True
    return pattern.endswith(".*") and topic.startswith(pattern[:-1])


@dataclass(frozen=True, slots=True)
class Event:
    """`personal`: params that differ per recipient (a download link built for the address
    that recipient connected to); called once per matching subscriber, must not raise."""

    topic: str
    method: str
    params: dict[str, Any]
    device: str | None = None
    personal: Callable[[Any], dict[str, Any]] | None = None


class Subscriber(Protocol):
    """What the bus delivers to: must not block and must not raise."""

    @property
    def subscriber_id(self) -> str: ...

    def deliver(self, event: Event, text: str) -> None: ...


@dataclass(slots=True)
class Subscription:
    subscriber: Subscriber
    patterns: set[str] = field(default_factory=set)
    devices: frozenset[str] | None = None

    def wants(self, event: Event) -> bool:
        if (
            self.devices is not None
            and event.device is not None
            and event.device not in self.devices
        ):
            return False
        return any(matches(pattern, event.topic) for pattern in self.patterns)


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: dict[str, Subscription] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def subscribe(
        self, subscriber: Subscriber, patterns: Iterable[str], devices: Iterable[str] | None = None
    ) -> Subscription:
        """Add patterns to the subscriber's set; `devices` (when given) replaces its filter."""
        subscription = self._subscriptions.get(subscriber.subscriber_id)
        if subscription is None:
            subscription = Subscription(subscriber)
            self._subscriptions[subscriber.subscriber_id] = subscription
        subscription.patterns.update(patterns)
        if devices is not None:
            subscription.devices = frozenset(devices) or None
        return subscription

    def unsubscribe(self, subscriber_id: str, patterns: Iterable[str] | None = None) -> set[str]:
        """Remove the given patterns (all when None); returns what was removed."""
        subscription = self._subscriptions.get(subscriber_id)
        if subscription is None:
            return set()
        removed = (
            set(subscription.patterns)
            if patterns is None
            else subscription.patterns & set(patterns)
        )
        subscription.patterns -= removed
        if not subscription.patterns:
            del self._subscriptions[subscriber_id]
        return removed

    def drop(self, subscriber_id: str) -> None:
        self._subscriptions.pop(subscriber_id, None)

    def topics_of(self, subscriber_id: str) -> list[str]:
        subscription = self._subscriptions.get(subscriber_id)
        return sorted(subscription.patterns) if subscription else []

    def filters_of(self, subscriber_id: str) -> dict[str, Any]:
        subscription = self._subscriptions.get(subscriber_id)
        if subscription is None or subscription.devices is None:
            return {}
        return {"device": sorted(subscription.devices)}

    def publish(self, event: Event) -> int:
        """Deliver to every matching subscriber and listener; returns the subscriber count."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", extra={"topic": event.topic})
        targets = [s.subscriber for s in self._subscriptions.values() if s.wants(event)]
        if targets and event.personal is not None:
            for subscriber in targets:
                params = {**event.params, **event.personal(subscriber), "topic": event.topic}
                subscriber.deliver(event, encode(notification(event.method, params)))
        elif targets:
            text = encode(notification(event.method, {**event.params, "topic": event.topic}))
            for subscriber in targets:
                subscriber.deliver(event, text)
        return len(targets)

    def stats(self) -> dict[str, Any]:
        topic_counts: Counter[str] = Counter()
        for subscription in self._subscriptions.values():
            topic_counts.update(subscription.patterns)
        return {
            "total_subscriptions": sum(topic_counts.values()),
            "active_clients": len(self._subscriptions),
            "topic_counts": dict(sorted(topic_counts.items())),
        }
