"""Pydantic models for the MediaMTX v3 control API.

They follow the component schemas of ``shared/reference/mediamtx-openapi.yaml``:

* Python attribute names are snake_case, JSON names are the camelCase names of the spec
  (generated with ``to_camel``; ``tests/unit/test_mediamtx_models.py`` checks every alias
  against the spec so a typo cannot slip through).
* Only the fields camera-service uses are typed. Responses carry many more (and each
  MediaMTX release adds some), so every model keeps unknown fields (``extra="allow"``)
  instead of failing.
* Enum-valued fields in *responses* are plain ``str`` so that a newer server with a new
  enum member does not break parsing; fields we *send* use ``Literal`` so we cannot send
  a value the spec forbids.
* Request bodies are produced by :meth:`PathConf.to_body`: by alias, ``None`` left out.
  MediaMTX decodes bodies with unknown fields forbidden and ``null`` slices rejected,
  so leaving unset fields out is the only safe encoding.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

RecordFormat = Literal["fmp4", "mpegts"]
RTSPTransport = Literal["udp", "multicast", "tcp", "automatic"]

#: PathConf fields whose value is a Go duration string ("10s", "1m0s", "500ms").
DURATION_FIELDS: frozenset[str] = frozenset(
    {
        "sourceOnDemandStartTimeout",
        "sourceOnDemandCloseAfter",
        "runOnDemandStartTimeout",
        "runOnDemandCloseAfter",
        "recordPartDuration",
        "recordSegmentDuration",
        "recordDeleteAfter",
    }
)


class MediaMTXModel(BaseModel):
    """Base: camelCase aliases, population by field name, unknown fields kept. Built on first
    use (`defer_build`): nodes with MediaMTX off never validate one."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        defer_build=True,
    )


class PathConf(MediaMTXModel):
    """``#/components/schemas/PathConf`` (the subset camera-service sets or reads)."""

    name: str | None = None

    # source
    source: str | None = None
    source_on_demand: bool | None = None
    source_on_demand_start_timeout: str | None = None
    source_on_demand_close_after: str | None = None
    rtsp_transport: RTSPTransport | None = None
    max_readers: int | None = None

    # hooks
    run_on_init: str | None = None
    run_on_init_restart: bool | None = None
    run_on_demand: str | None = None
    run_on_demand_restart: bool | None = None
    run_on_demand_start_timeout: str | None = None
    run_on_demand_close_after: str | None = None

    # recording
    record: bool | None = None
    record_path: str | None = None
    record_format: RecordFormat | None = None
    record_part_duration: str | None = None
    record_segment_duration: str | None = None
    record_delete_after: str | None = None

    def to_body(self) -> dict[str, Any]:
        """JSON body for add/patch/replace: by alias, ``None`` and ``name`` left out.

        ``name`` is filled by the server from the URL; unknown fields kept from a
        response are sent back only when they are not ``None``.
        """
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        body.pop("name", None)
        return body


class PathConfList(MediaMTXModel):
    """``#/components/schemas/PathConfList``."""

    item_count: int = 0
    page_count: int = 0
    items: list[PathConf] = Field(default_factory=list)


class PathSource(MediaMTXModel):
    """``#/components/schemas/PathSource``."""

    type: str | None = None
    id: str | None = None


class PathReader(MediaMTXModel):
    """``#/components/schemas/PathReader``."""

    type: str | None = None
    id: str | None = None


class PathTrack(MediaMTXModel):
    """``#/components/schemas/PathTrack``."""

    codec: str | None = None
    codec_props: dict[str, Any] | None = None


class Path(MediaMTXModel):
    """``#/components/schemas/Path``: runtime state of a path.

    ``ready``/``bytesSent``/``bytesReceived``/``tracks`` are deprecated in the spec in
    favour of ``available``/``outboundBytes``/``inboundBytes``/``tracks2``; the helper
    properties read whichever the server provides.
    """

    name: str = ""
    conf_name: str | None = None
    source: PathSource | None = None
    available: bool | None = None
    available_time: str | None = None
    online: bool | None = None
    online_time: str | None = None
    ready: bool | None = None
    ready_time: str | None = None
    tracks: list[str] = Field(default_factory=list)
    tracks2: list[PathTrack] = Field(default_factory=list)
    bytes_received: int | None = None
    bytes_sent: int | None = None
    inbound_bytes: int | None = None
    outbound_bytes: int | None = None
    readers: list[PathReader] = Field(default_factory=list)

    @property
    def is_ready(self) -> bool:
        """True when the stream can be read (``available``, else deprecated ``ready``)."""
        if self.available is not None:
            return self.available
        return bool(self.ready)

    @property
    def reader_count(self) -> int:
        return len(self.readers)

    @property
    def bytes_out(self) -> int:
        """Bytes sent to readers."""
        if self.outbound_bytes is not None:
            return self.outbound_bytes
        return self.bytes_sent or 0

    @property
    def bytes_in(self) -> int:
        """Bytes received from the source."""
        if self.inbound_bytes is not None:
            return self.inbound_bytes
        return self.bytes_received or 0

    @property
    def source_type(self) -> str | None:
        return self.source.type if self.source is not None else None


class PathList(MediaMTXModel):
    """``#/components/schemas/PathList``."""

    item_count: int = 0
    page_count: int = 0
    items: list[Path] = Field(default_factory=list)


class Info(MediaMTXModel):
    """``#/components/schemas/Info`` (``GET /v3/info``)."""

    version: str | None = None
    started: str | None = None


class RecordingSegment(MediaMTXModel):
    """``#/components/schemas/RecordingSegment``."""

    start: str


class Recording(MediaMTXModel):
    """``#/components/schemas/Recording``: the segments recorded for one path."""

    name: str
    segments: list[RecordingSegment] = Field(default_factory=list)


class RecordingList(MediaMTXModel):
    """``#/components/schemas/RecordingList``."""

    item_count: int = 0
    page_count: int = 0
    items: list[Recording] = Field(default_factory=list)


class ErrorBody(MediaMTXModel):
    """``#/components/schemas/Error``."""

    status: str | None = None
    error: str | None = None
