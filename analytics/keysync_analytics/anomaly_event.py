"""The CloudEvent of an anomaly alert (`io.keysync.anomaly.v1`), exactly as keysync
writes it (keysync/src/anomaly/event.rs, docs/export.md#anomaly-alerts): the same
`source`, `id` and `data`, so that a consumer reading both keeps one of each. Only
`time`, when the alert was raised, differs between the two producers."""

import hashlib
import json
import uuid
from datetime import datetime, timezone

from .judgement import Finding

EVENT_TYPE = "io.keysync.anomaly.v1"
SOURCE = "keysync/anomaly"
# The Kafka record's `content-type` header in structured mode.
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def event_id(org_id: str, kind: str, hour_ms: int) -> str:
    """SHA-256 over `keysync.anomaly.v1`, a zero byte, the organization's 16 bytes, the
    kind in ASCII, a zero byte, the hour's start in Unix ms (8 bytes, big endian); its
    first 16 bytes as a UUID of version 8."""
    digest = hashlib.sha256(
        b"keysync.anomaly.v1\0"
        + uuid.UUID(org_id).bytes
        + kind.encode("ascii")
        + b"\0"
        + hour_ms.to_bytes(8, "big", signed=True)
    ).digest()
    shaped = bytearray(digest[:16])
    shaped[6] = (shaped[6] & 0x0F) | 0x80
    shaped[8] = (shaped[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(shaped)))


def rfc3339_ms(epoch_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, as every time in the export is written."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{epoch_ms % 1000:03d}Z"


def anomaly_event(
    org_id: str,
    hour_ms: int,
    hour_complete: bool,
    baseline_weeks: int,
    finding: Finding,
    raised_at_ms: int,
) -> str:
    """The event's structured-mode JSON (the Kafka record's value)."""
    event = {
        "specversion": "1.0",
        "id": event_id(org_id, finding.kind, hour_ms),
        "source": SOURCE,
        "type": EVENT_TYPE,
        "subject": org_id,
        "time": rfc3339_ms(raised_at_ms),
        "datacontenttype": "application/json",
        "data": {
            "org_id": org_id,
            "kind": finding.kind,
            "hour": rfc3339_ms(hour_ms),
            "hour_complete": hour_complete,
            # Doubles stay doubles (`6000.0`), integers stay integers, as serde writes them.
            "observed": float(finding.observed),
            "baseline": float(finding.baseline),
            "threshold": float(finding.threshold),
            "requests": int(finding.requests),
            "matching_requests": int(finding.matching_requests),
            "baseline_weeks": int(baseline_weeks),
        },
    }
    return json.dumps(event, separators=(",", ":"))
