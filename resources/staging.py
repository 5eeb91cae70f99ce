"""Stage local camera cards to S3, so a Batch job (which sees only S3) can read them.

``stage_cards([(camera, folder), ...], "s3://BUCKET/PREFIX/cards")`` puts every file of each camera
folder at ``cards/<camera>/<path in the folder>`` (a camera may come from several folders: its cards), with its sha256 as object metadata (``x-amz-meta-sha256``).

Choices, and why:

* **Content-addressed.** Each local file is hashed first. A key whose object already carries that
  sha256 is not sent again (a re-run uploads nothing); content already somewhere under the root (a
  second copy of a card, a camera's card copied twice) is copied inside S3, not uploaded. What is
  known is kept in a manifest at ``cards/.odins-ravne-staged.json`` (key -> sha256, size, ETag), so a
  re-run costs one listing and no per-object HEAD; an object the manifest does not know (a run that
  stopped before writing it) is asked for its metadata once. The manifest's name starts with a dot,
  so ingest and the camera listing never see it.
* **Multipart and resumable.** Files of ``multipart_threshold`` bytes or more go up in parts. An
  unfinished upload of the same key is found again (``list_multipart_uploads``) and each part it
  holds is kept when its checksum (SHA256, which S3 keeps under SSE-KMS, or else the ETag's MD5)
  matches the local bytes; only the missing parts are sent, so a card interrupted halfway resumes.
* **One key, one content.** Two local files that would land on one key with different bytes are
  refused before anything is sent: which one is the camera's is the user's call.
* Hidden files (``.DS_Store``, dot-folders) are not staged: ingest never reads them.

This module does not import Dagster.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

import botocore.exceptions

from gpu_ops.fileio import sha256_file
from resources.aws import aws_client

MANIFEST = ".odins-ravne-staged.json"
SHA_META = "sha256"
MIN_PART = 5 * 1024 * 1024  # S3's smallest part (all but the last)
MAX_PARTS = 10_000
# progress(phase, n, total): phase "hash" (bytes hashed) or "upload" (bytes sent, copied or found staged).
Progress = Callable[[str, int, int], None]


class StagingError(ValueError):
    """The cards cannot be staged as given; the message says what to change."""


@dataclass(frozen=True)
class CardFile:
    camera: str
    relative: str  # POSIX path inside the camera folder
    path: Path
    size: int

    @property
    def key(self) -> str:
        return f"{self.camera}/{self.relative}"


@dataclass
class StagingSummary:
    root: str
    cameras: int = 0
    files: int = 0
    bytes: int = 0
    uploaded: int = 0
    sent_bytes: int = 0
    copied: int = 0
    present: int = 0
    resumed_parts: int = 0
    seconds: float = 0.0
    uploaded_keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        resumed = f", {self.resumed_parts} part(s) of an interrupted upload kept" if self.resumed_parts else ""
        return (
            f"staged {self.cameras} camera(s), {self.files} file(s) ({_size(self.bytes)}) to {self.root}: "
            f"{self.uploaded} uploaded ({_size(self.sent_bytes)} sent{resumed}), {self.copied} copied inside S3 "
            f"(same content already there), {self.present} already staged; {self.seconds:.1f}s"
        )


def card_files(cameras: Sequence[tuple[str, Path]]) -> list[CardFile]:
    """Every non-hidden file of each (camera, folder), sorted by key."""
    files = []
    for camera, folder in cameras:
        folder = Path(folder)
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if any(part.startswith(".") for part in relative.split("/")) or not path.is_file():
                continue
            files.append(CardFile(camera, relative, path, path.stat().st_size))
    return sorted(files, key=lambda f: (f.key, str(f.path)))


def stage_cards(
    cameras: Sequence[tuple[str, Path]],
    root_uri: str,
    *,
    s3: Any = None,
    region: str | None = None,
    part_size: int = 8 * 1024 * 1024,
    multipart_threshold: int = 16 * 1024 * 1024,
    workers: int = 8,
    progress: Progress | None = None,
) -> StagingSummary:
    """Stage the camera folders under ``root_uri`` (``s3://bucket/prefix``); returns what was done."""
    bucket, prefix = _split(root_uri)
    s3 = s3 or aws_client("s3", region=region)
    started = time.perf_counter()
    files = card_files(cameras)
    summary = StagingSummary(root=f"s3://{bucket}/{prefix}", cameras=len({c for c, _ in cameras}), files=len(files), bytes=sum(f.size for f in files))

    def note(phase: str, n: int) -> None:
        if progress is not None:
            progress(phase, n, summary.bytes)

    hashes: dict[CardFile, str] = {}
    for card in files:  # one reader: a card reader or USB disk is slower with parallel reads
        hashes[card] = sha256_file(card.path)
        note("hash", card.size)
    wanted: dict[str, CardFile] = {}
    for card in files:
        other = wanted.setdefault(card.key, card)
        if other is not card and hashes[other] != hashes[card]:
            raise StagingError(
                f"{card.key} would be staged from two different files, {other.path} and {card.path}: "
                "rename one, or give only one of the cards for this camera"
            )

    listed = _listing(s3, bucket, prefix)
    manifest = _read_manifest(s3, bucket, prefix)
    known: dict[str, str] = {}  # key -> sha256 of what is staged there now
    for key, (size, etag) in listed.items():
        entry = manifest.get(key)
        if entry and entry.get("size") == size and entry.get("etag") == etag:
            known[key] = entry["sha256"]
    to_send: dict[str, CardFile] = {}  # sha256 -> the file whose bytes go up
    copies: list[tuple[CardFile, str]] = []
    try:
        for key, card in wanted.items():
            digest = hashes[card]
            if key in listed and key not in known:
                known[key] = _head_sha(s3, bucket, f"{prefix}/{key}")  # staged by a run that stopped before its manifest
            if known.get(key) == digest:
                summary.present += 1
                note("upload", card.size)
            elif digest in to_send or digest in known.values():
                copies.append((card, digest))
            else:
                to_send[digest] = card
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            futures = {
                pool.submit(_upload, s3, bucket, f"{prefix}/{card.key}", card.path, digest, part_size, multipart_threshold, note): card
                for digest, card in to_send.items()
            }
            for future in as_completed(futures):
                card = futures[future]
                sent_bytes, kept_parts = future.result()
                summary.uploaded += 1
                summary.sent_bytes += sent_bytes
                summary.resumed_parts += kept_parts
                summary.uploaded_keys.append(card.key)
                known[card.key] = hashes[card]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C or a failure: finish what is in flight, start nothing
        by_content = {sha: key for key, sha in known.items() if sha}
        for card, digest in copies:
            source = by_content[digest]
            s3.copy({"Bucket": bucket, "Key": f"{prefix}/{source}"}, bucket, f"{prefix}/{card.key}")  # metadata comes along
            known[card.key] = digest
            summary.copied += 1
            note("upload", card.size)
    finally:
        # Whatever got staged is recorded, also when an upload failed or the user pressed Ctrl-C.
        _write_manifest(s3, bucket, prefix, known)
    summary.seconds = time.perf_counter() - started
    summary.uploaded_keys.sort()
    return summary


def _upload(s3: Any, bucket: str, key: str, path: Path, digest: str, part_size: int, threshold: int, note: Callable[[str, int], None]) -> tuple[int, int]:
    """Send one file; returns (bytes sent, parts kept from an interrupted upload)."""
    size = path.stat().st_size
    if size < threshold:
        with path.open("rb") as handle:
            s3.put_object(Bucket=bucket, Key=key, Body=handle, Metadata={SHA_META: digest})
        note("upload", size)
        return size, 0
    upload_id, held = _unfinished_upload(s3, bucket, key)
    if held:
        part_size = held[1]["Size"] if 1 in held else part_size  # the interrupted upload's own part size
    part_size = max(part_size, MIN_PART, math.ceil(size / MAX_PARTS))
    if upload_id is None:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={SHA_META: digest}, ChecksumAlgorithm="SHA256")["UploadId"]
    parts, sent, kept = [], 0, 0
    with path.open("rb") as handle:
        for number in range(1, math.ceil(size / part_size) + 1):
            data = handle.read(part_size)
            checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
            previous = held.get(number)
            if previous and previous["Size"] == len(data) and _same_part(previous, data, checksum):
                parts.append({"PartNumber": number, "ETag": previous["ETag"], "ChecksumSHA256": checksum})
                kept += 1
            else:
                answer = s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                    ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
                sent += len(data)
            note("upload", len(data))
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return sent, kept


def _unfinished_upload(s3: Any, bucket: str, key: str) -> tuple[str | None, dict[int, dict]]:
    """The newest unfinished multipart upload of ``key`` with its parts by number, if there is one."""
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) if u["Key"] == key]
    if not uploads:
        return None, {}
    upload = max(uploads, key=lambda u: u["Initiated"])
    parts: dict[int, dict] = {}
    for page in s3.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload["UploadId"]):
        parts.update({p["PartNumber"]: p for p in page.get("Parts", [])})
    return upload["UploadId"], parts


def _same_part(listed: Mapping, data: bytes, checksum: str) -> bool:
    if listed.get("ChecksumSHA256"):
        return listed["ChecksumSHA256"] == checksum
    return listed["ETag"].strip('"') == hashlib.md5(data).hexdigest()  # noqa: S324 - S3's part ETag, not security


def _listing(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) + 1 :]
            if key != MANIFEST:
                out[key] = (obj["Size"], obj["ETag"])
    return out


def _head_sha(s3: Any, bucket: str, key: str) -> str | None:
    return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(SHA_META)


def _read_manifest(s3: Any, bucket: str, prefix: str) -> dict[str, dict]:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return {}
        raise
    try:
        return json.loads(body).get("objects", {})
    except (ValueError, AttributeError):
        return {}  # unreadable: every object is asked for its metadata once, then it is rewritten


def _write_manifest(s3: Any, bucket: str, prefix: str, known: Mapping[str, str]) -> None:
    listed = _listing(s3, bucket, prefix)
    objects = {key: {"sha256": sha, "size": listed[key][0], "etag": listed[key][1]} for key, sha in sorted(known.items()) if sha and key in listed}
    body = json.dumps({"version": 1, "objects": objects}, indent=1).encode()
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}", Body=body, ContentType="application/json")


def _split(root_uri: str) -> tuple[str, str]:
    parsed = urlparse(root_uri)
    prefix = parsed.path.strip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not prefix:
        raise StagingError(f"{root_uri} is not an s3://BUCKET/PREFIX to stage the cards under")
    return parsed.netloc, prefix


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
