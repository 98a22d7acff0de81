"""Desired MediaMTX state without I/O: per-camera configuration and the reconcile plan."""

from __future__ import annotations

from camera_service.mediamtx.desired import plan_reconcile
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.pathconf import camera_path_conf


def echoed(conf: PathConf, **extra: object) -> PathConf:
    """``conf`` as MediaMTX lists it: every field filled in."""
    return PathConf.model_validate({**conf.to_body(), "maxReaders": 0, **extra})


def test_plan_adds_replaces_keeps_and_removes_only_owned_paths() -> None:
    lab = camera_path_conf("testsrc2", "lavfi", close_after=5)
    gate = camera_path_conf("rtsp://192.0.2.7/live")
    desired = {"lab": lab, "gate": gate, "new": lab, "foreign": lab}
    current = {
        "lab": echoed(lab),
        "gate": echoed(gate, sourceOnDemand=False),
        "foreign": echoed(lab),
        "stale": echoed(lab),
        "operator": echoed(lab),
    }
    owned = frozenset({"lab", "gate", "new", "stale", "gone"})
    plan = plan_reconcile(desired, current, owned)
    assert list(plan.add) == ["new"]
    assert list(plan.replace) == ["gate"]
    assert plan.unchanged == ["lab"]
    assert plan.remove == ["stale"]
    assert plan.release == ["gone"]
    assert (
        list(plan.conflicts) == ["foreign"]
        and "not created by camera-service" in (plan.conflicts["foreign"])
    )


def test_plan_of_nothing_owned_touches_nothing() -> None:
    conf = camera_path_conf("testsrc2", "lavfi")
    plan = plan_reconcile({}, {"cam": echoed(conf)}, frozenset())
    assert (plan.add, plan.replace, plan.remove, plan.release) == ({}, {}, [], [])
