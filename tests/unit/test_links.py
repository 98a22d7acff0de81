"""Download links are built per recipient from the address it connected to (issue 10)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from camera_service.auth.identity import Identity
from camera_service.auth.roles import Role
from camera_service.events import Event, EventBus
from camera_service.rpc.session import Session
from camera_service.storage.links import DownloadLinks, link_host


def test_each_recipient_gets_a_link_to_its_own_address() -> None:
    links = DownloadLinks(b"k" * 32, 600, 8003, None)
    bus = EventBus()
    sent: dict[str, list[str]] = {}
    for address in ("192.168.1.5", "10.0.0.7", "::1"):
        session = Session("peer", 16, None)
        session.host = address
        session.identity = Identity("u", Role.VIEWER, "api_key")
        session.write_now = lambda text, a=address: sent.setdefault(a, []).append(text) or True
        bus.subscribe(session, ["snapshot.taken"])
    event = Event(
        "snapshot.taken",
        "snapshot_taken",
        {"filename": "a.jpg", "download_url": "http://attacker.example:8003/x"},
        personal=links.personal_url("snapshots", "a.jpg"),
    )
    assert bus.publish(event) == 3
    hosts = {
        address: urlsplit(json.loads(texts[0])["params"]["download_url"]).netloc
        for address, texts in sent.items()
    }
    assert hosts == {
        "192.168.1.5": "192.168.1.5:8003",
        "10.0.0.7": "10.0.0.7:8003",
        "::1": "[::1]:8003",
    }


def test_link_hosts() -> None:
    assert link_host(None) == "127.0.0.1"
    assert link_host("::ffff:10.1.2.3") == "10.1.2.3"
    assert link_host("fe80::1%eth0") == "[fe80::1]"
    assert DownloadLinks(b"k", 60, 8003, "https://x.example/").base_url("10.0.0.1") == (
        "https://x.example"
    )
