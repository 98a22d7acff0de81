from __future__ import annotations

import json

import pytest

from camera_service.events import DEFAULT_TOPICS, Event, EventBus, matches, valid_pattern


class Recorder:
    def __init__(self, name: str) -> None:
        self.subscriber_id = name
        self.texts: list[str] = []

    def deliver(self, event: Event, text: str) -> None:
        self.texts.append(text)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("camera.*", "camera.connected", True),
        ("camera.*", "cameras.connected", False),
        ("camera.connected", "camera.connected", True),
        ("camera.connected", "camera.disconnected", False),
        ("*", "system.health", True),
        ("recording.*", "camera.connected", False),
    ],
)
def test_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


def test_valid_patterns() -> None:
    assert all(valid_pattern(p) for p in [*DEFAULT_TOPICS, "*", "system.startup"])
    assert not any(valid_pattern(p) for p in ["camera", "camera.nope", "nope.*", "camera.**", ""])


def test_publish_filters_by_topic_and_device_and_encodes_once() -> None:
    bus = EventBus()
    everything, cam0_only, recordings = Recorder("a"), Recorder("b"), Recorder("c")
    bus.subscribe(everything, ["*"])
    bus.subscribe(cam0_only, ["camera.*"], devices=["camera0"])
    bus.subscribe(recordings, ["recording.*"])
    count = bus.publish(
        Event("camera.connected", "camera_status_update", {"device": "camera1"}, device="camera1")
    )
    assert count == 1
    bus.publish(
        Event("camera.connected", "camera_status_update", {"device": "camera0"}, device="camera0")
    )
    assert len(everything.texts) == 2 and len(cam0_only.texts) == 1 and not recordings.texts
    note = json.loads(cam0_only.texts[0])
    assert note == {
        "jsonrpc": "2.0",
        "method": "camera_status_update",
        "params": {"device": "camera0", "topic": "camera.connected"},
    }
    assert everything.texts[1] is cam0_only.texts[0]


def test_unsubscribe_and_stats() -> None:
    bus = EventBus()
    a, b = Recorder("a"), Recorder("b")
    bus.subscribe(a, ["camera.*", "recording.*"])
    bus.subscribe(b, ["camera.*"])
    assert bus.stats() == {
        "total_subscriptions": 3,
        "active_clients": 2,
        "topic_counts": {"camera.*": 2, "recording.*": 1},
    }
    assert bus.unsubscribe("a", ["camera.*", "system.*"]) == {"camera.*"}
    assert bus.topics_of("a") == ["recording.*"]
    assert bus.unsubscribe("b") == {"camera.*"}
    assert bus.stats()["active_clients"] == 1


def test_listener_failure_does_not_stop_delivery() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda e: seen.append(e.topic))
    sub = Recorder("x")
    bus.subscribe(sub, ["system.*"])
    bus.publish(Event("system.health", "system_status_update", {}))
    assert seen == ["system.health"] and len(sub.texts) == 1
