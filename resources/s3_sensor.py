"""What is new in the bucket: the logic of the S3 sensors, without Dagster.

Uploads land under ``s3://BUCKET/PREFIX/<camera>/...``. Two ways to learn about them:

**Listing** (:func:`poll_s3`, ``queue.adapter: s3``). ``dagster_aws``'s ``get_objects`` re-lists the
whole prefix on every tick, so a tick costs what exists. Here the cursor keeps, per camera, the last
key seen; a tick lists the camera folders (one delimiter call per 1000 cameras) and then each camera
from its ``StartAfter`` key, so it costs what is new. S3 lists keys in UTF-8 byte order, and camera
traps name files in sequence (``IMG_0001.JPG``, dated folders), so new uploads sort after old ones.
A key that sorts *before* the cursor (a late upload of an old name) is not seen by the fast path:
``rescan_every=N`` re-lists each camera every N-th tick and picks up keys whose ``LastModified`` is
newer than the newest one seen. The event mode below has no such blind spot.

**Events** (:func:`poll_sqs`, ``queue.adapter: sqs``). The bucket sends ``s3:ObjectCreated:*``
notifications to an SQS queue (``infra/cloudformation.yaml`` wires it); a tick receives at most
``max_messages`` and costs nothing when nothing arrived.

Delivery is *at least once*, deliberately. Messages are deleted only when the caller acknowledges
them (:meth:`SqsUploads.ack`) after it has turned them into run requests; if the tick fails first,
SQS shows them again after the visibility timeout and the next tick handles them. A duplicate is
harmless: media are keyed by content hash, so a camera materialized twice for the same files does no
work twice, and :func:`run_key_for` gives the same run key for the same keys, which Dagster
de-duplicates. Losing an upload, by contrast, would be silent. A message that cannot be parsed is
never acknowledged, so after the queue's ``maxReceiveCount`` it moves to the dead-letter queue where
someone can look at it, instead of blocking the queue or vanishing.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

CURSOR_VERSION = 1


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _camera_of(key: str, prefix: str) -> str | None:
    """The camera folder of a key under ``prefix``, or None for keys that are not camera media."""
    if not key.startswith(prefix) or key.endswith("/"):
        return None
    parts = PurePosixPath(key[len(prefix) :]).parts
    if len(parts) < 2:  # a file directly under the prefix belongs to no camera
        return None
    if any(part.startswith(".") for part in parts):  # .DS_Store, temporary upload names
        return None
    return parts[0]


def run_key_for(camera: str, keys: list[str]) -> str:
    """A stable run key for a camera's batch of new keys: the same keys give the same run key."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"{camera}:{digest}"


# ---------------------------------------------------------------------------------------------
# Listing with per-camera StartAfter keys
# ---------------------------------------------------------------------------------------------


def _load_cursor(cursor: str | None) -> dict:
    if not cursor:
        return {"v": CURSOR_VERSION, "tick": 0, "cameras": {}}
    try:
        data = json.loads(cursor)
    except json.JSONDecodeError as err:
        raise ValueError(f"S3 sensor cursor is not JSON ({err}); reset the sensor's cursor to start over") from err
    if data.get("v") != CURSOR_VERSION:
        raise ValueError(f"S3 sensor cursor version {data.get('v')!r} is not {CURSOR_VERSION}; reset the sensor's cursor")
    return data


def poll_s3(
    client: Any,
    bucket: str,
    prefix: str,
    cursor: str | None,
    *,
    max_keys_per_camera: int = 10_000,
    rescan_every: int = 0,
) -> tuple[dict[str, list[str]], str]:
    """New keys per camera since ``cursor``; returns ``({camera: [key, ...]}, new_cursor)``.

    Keys are full S3 keys, sorted. At most ``max_keys_per_camera`` are returned for a camera in one
    tick (a season's first upload is then spread over several ticks instead of one huge one); the
    cursor continues from the last one returned.
    """
    prefix = _normalize_prefix(prefix)
    state = _load_cursor(cursor)
    state["tick"] = int(state.get("tick", 0)) + 1
    rescan = rescan_every > 0 and state["tick"] % rescan_every == 0
    cameras = state.setdefault("cameras", {})
    found: dict[str, list[str]] = {}
    for camera in _list_cameras(client, bucket, prefix):
        seen = cameras.get(camera, {})
        keys, last_key, last_time = _list_new(
            client, bucket, f"{prefix}{camera}/", seen.get("after"), seen.get("newest"), rescan, max_keys_per_camera
        )
        keys = [k for k in keys if _camera_of(k, prefix) == camera]
        if keys:
            found[camera] = sorted(keys)
        record = dict(seen)
        if last_key and last_key > record.get("after", ""):
            record["after"] = last_key
        if last_time and last_time > record.get("newest", ""):
            record["newest"] = last_time
        if record:
            cameras[camera] = record
    return found, json.dumps(state, sort_keys=True)


def _list_cameras(client: Any, bucket: str, prefix: str) -> list[str]:
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(prefix) :].strip("/")
            if name and not name.startswith("."):
                names.append(name)
    return sorted(names)


def _list_new(
    client: Any, bucket: str, camera_prefix: str, after: str | None, newest: str | None, rescan: bool, limit: int
) -> tuple[list[str], str | None, str | None]:
    """Keys of one camera not seen yet; returns (keys, greatest key listed, newest LastModified listed).

    The fast path lists from ``StartAfter=after``. A rescan lists the whole camera and also reports
    keys at or before ``after`` modified after ``newest``: late uploads of old names. (S3 times have
    one-second resolution; a late upload within the same second as the newest key seen is missed
    by the rescan. The SQS mode has no such gap.)
    """
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": camera_prefix}
    if after and not rescan:
        kwargs["StartAfter"] = after
    keys: list[str] = []
    last_key, last_time = None, None
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs, PaginationConfig={"PageSize": 1000}):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            modified = obj["LastModified"].astimezone(timezone.utc).isoformat()
            if rescan and after is not None and key <= after and newest is not None and modified <= newest:
                continue  # listed on an earlier tick
            keys.append(key)
            last_key = key if last_key is None or key > last_key else last_key
            last_time = modified if last_time is None or modified > last_time else last_time
            if len(keys) >= limit:
                return keys, last_key, last_time
    return keys, last_key, last_time


# ---------------------------------------------------------------------------------------------
# S3 event notifications through SQS
# ---------------------------------------------------------------------------------------------


class SqsUploads(dict):
    """``{camera: [key, ...]}`` from one receive, plus what is needed to acknowledge it.

    Call :meth:`ack` once the uploads are turned into run requests (see the module docstring).
    """

    def __init__(self, client: Any, queue_url: str):
        super().__init__()
        self.client = client
        self.queue_url = queue_url
        self.receipts: list[str] = []  # messages handled: ours, foreign or test events
        self.unparsed = 0  # left on the queue, bound for the dead-letter queue

    def ack(self) -> int:
        """Delete the handled messages; returns how many."""
        deleted = 0
        for start in range(0, len(self.receipts), 10):  # delete_message_batch takes at most 10
            batch = self.receipts[start : start + 10]
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)]
            )
            deleted += len(response.get("Successful", []))
        self.receipts = []
        return deleted


def _records(body: str) -> list[dict] | None:
    """S3 event records of one message body (plain or wrapped by SNS); None when unreadable."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):  # S3 -> SNS -> SQS
        return _records(data["Message"])
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return []  # S3 sends one when the notification is configured: nothing to do
    if isinstance(data, dict) and isinstance(data.get("Records"), list):
        return data["Records"]
    return None


def poll_sqs(
    client: Any,
    queue_url: str,
    prefix: str,
    max_messages: int = 100,
    *,
    bucket: str | None = None,
    wait_seconds: int = 0,
) -> SqsUploads:
    """Receive up to ``max_messages`` S3 ObjectCreated notifications; new keys per camera.

    Messages are not deleted here: call ``ack()`` on the result when they are handled.
    """
    prefix = _normalize_prefix(prefix)
    uploads = SqsUploads(client=client, queue_url=queue_url)
    keys: dict[str, set[str]] = {}
    received = 0
    while received < max_messages:
        response = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - received), WaitTimeSeconds=wait_seconds
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        received += len(messages)
        for message in messages:
            records = _records(message.get("Body", ""))
            if records is None:
                uploads.unparsed += 1
                continue
            for record in records:
                if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                    continue
                s3 = record.get("s3") or {}
                if bucket and (s3.get("bucket") or {}).get("name") != bucket:
                    continue
                # Keys in S3 notifications are URL-encoded, with '+' for spaces.
                key = urllib.parse.unquote_plus((s3.get("object") or {}).get("key", ""))
                camera = _camera_of(key, prefix)
                if camera:
                    keys.setdefault(camera, set()).add(key)
            uploads.receipts.append(message["ReceiptHandle"])
    for camera in sorted(keys):
        uploads[camera] = sorted(keys[camera])
    return uploads


def s3_event(bucket: str, key: str, event: str = "ObjectCreated:Put", when: datetime | None = None) -> str:
    """The body S3 sends to SQS for one upload (used by the tests and to replay an upload by hand)."""
    when = when or datetime.now(timezone.utc)
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventTime": when.isoformat().replace("+00:00", "Z"),
                    "eventName": event,
                    "s3": {"bucket": {"name": bucket}, "object": {"key": urllib.parse.quote_plus(key, safe="/")}},
                }
            ]
        }
    )
