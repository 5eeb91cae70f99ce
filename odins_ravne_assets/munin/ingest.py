"""Build a camera's media manifest (the ``raw_images`` asset) from its folder or S3 prefix.

Probing a file means hashing it and decoding it once, which costs far more than listing. A file seen
before with the same path, size and modification time keeps its earlier row, so a camera re-ingested
after new files arrive probes only the new ones. Files are probed on a few threads: hashing and JPEG
decoding release the GIL.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.bursts import BURST_SCHEMA, MAKER_SEQUENCE_FIELDS, assign_bursts, read_maker_sequence
from gpu_ops.media import media_type_for, probe_media

# The probe cache: the media row, the camera's own burst counter where it writes one, and what says
# whether the file changed.
CACHE_SCHEMA = pa.schema([*schemas.MEDIA, *(pa.field(n, t) for n, t in MAKER_SEQUENCE_FIELDS), pa.field("mtime", pa.float64())])


def cache_key(camera_id: str) -> str:
    return f"_work/ingest/camera_id={camera_id}/probe_cache.parquet"


def build_manifest(
    camera_storage,
    camera_id: str,
    output_storage,
    *,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
    burst_gap_s: float = 3.0,
    burst_max_frames: int = 30,
) -> tuple[pa.Table, dict]:
    """The camera's ``media`` table and figures about how it was built.

    Bursts (the frames of one trigger) are assigned over the whole camera each time, from the camera's
    own burst counter where it writes one (Reconyx MakerNotes, "Seq 2/3" texts) and EXIF time: a new
    file can join or open a burst, so they are never taken from the cache.
    """
    previous = {}
    if output_storage.exists(cache_key(camera_id)):
        cached = output_storage.read_parquet(cache_key(camera_id))
        previous = {row["file_path"]: row for row in cached.to_pylist()}
    files = [info for info in camera_storage.list() if media_type_for(info.key)]
    reused, todo = [], []
    for info in files:
        old = previous.get(info.key)
        if old and old["bytes"] == info.size and old["mtime"] == info.mtime:
            reused.append(old)
        else:
            todo.append(info)

    def probe(info):
        with camera_storage.local_copy(info.key) as path:
            # An S3 object's LastModified is when it was uploaded, not when the photo was taken, and
            # the temporary copy's own time means nothing: neither may become a capture time.
            row = probe_media(path, camera_id=camera_id, file_path=info.key, file_mtime=not camera_storage.is_s3)
            sequence = read_maker_sequence(path) if row["status"] == "ok" and row["media_type"] == "image" else None
        if sequence is not None:
            row.update(maker_sequence=sequence.index, maker_sequence_length=sequence.length, maker_event=sequence.event)
        row["mtime"] = info.mtime
        return row

    probed = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, row in enumerate(pool.map(probe, todo), start=1):
            probed.append(row)
            if progress:
                progress(done, len(todo))
    rows = sorted(reused + probed, key=lambda r: r["file_path"])
    cache = pa.Table.from_pylist(rows, schema=CACHE_SCHEMA)
    output_storage.write_parquet(cache_key(camera_id), cache)
    bursts = assign_bursts(cache, max_gap_s=burst_gap_s, max_frames=burst_max_frames)
    manifest = cache.select(schemas.MEDIA.names)
    for name in BURST_SCHEMA.names:
        manifest = manifest.set_column(manifest.schema.get_field_index(name), name, bursts.column(name))
    failed = [r for r in rows if r["status"] != "ok"]
    figures = {
        "media": len(rows),
        "images": sum(r["media_type"] == "image" for r in rows),
        "videos": sum(r["media_type"] == "video" for r in rows),
        "failed": len(failed),
        "probed_now": len(probed),
        "reused": len(reused),
        "with_gps": sum(r["latitude"] is not None for r in rows),
        "exif_time": sum(r["timestamp_source"] == "exif" for r in rows),
        "bursts": len(set(bursts.column("burst_id").to_pylist())),
    }
    return manifest, figures
