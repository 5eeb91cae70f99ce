"""Build a camera's media manifest (the ``raw_images`` asset) from its folder or S3 prefix.

Probing a file means hashing it and decoding it once, which costs far more than listing. A file seen
before with the same path, size and modification time keeps its earlier row, so a camera re-ingested
after new files arrive probes only the new ones. Files are probed on a few threads: hashing and JPEG
decoding release the GIL.

What is not media is counted, never dropped without a word: HEIC/HEIF photos (no decoder here),
hidden files with a media extension and links that point nowhere (both local only: S3 has neither
links nor a listing of what the storage layer hides) each get one warning line, with an example.
A file that cannot be read (I/O, S3; see :func:`gpu_ops.media.read_retrying`) is a failed row
without ``bytes`` (:func:`gpu_ops.media.unread_row`), which the cache never reuses: the next run
probes it again.

An output folder inside the input (``--out`` under the camera folders) is never input: its crops and
plots are not media of a camera (:func:`output_key_inside`, :func:`camera_folders`).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.bursts import BURST_SCHEMA, MAKER_SEQUENCE_FIELDS, assign_bursts, read_maker_sequence
from gpu_ops.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaReadError, media_type_for, probe_media, read_retrying, unread_row

# The probe cache: the media row, the camera's own burst counter where it writes one, and what says
# whether the file changed.
CACHE_SCHEMA = pa.schema([*schemas.MEDIA, *(pa.field(n, t) for n, t in MAKER_SEQUENCE_FIELDS), pa.field("mtime", pa.float64())])


# Photos a phone or a newer camera writes that nothing here decodes.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})


def cache_key(camera_id: str) -> str:
    return f"_work/ingest/camera_id={camera_id}/probe_cache.parquet"


def output_key_inside(input_storage, output_storage) -> str | None:
    """The output root as a key under ``input_storage``'s root when it lies inside it, else None."""
    inner, outer = output_storage.root, input_storage.root
    if inner.startswith(outer.rstrip("/") + "/"):
        return inner[len(outer.rstrip("/")) + 1 :]
    return None


def camera_folders(input_storage, output_storage) -> tuple[list[str], str | None]:
    """The input root's top-level folders that are cameras, and the one left out because it is the
    output (or holds it), if any."""
    folders = input_storage.top_level_folders()
    inside = output_key_inside(input_storage, output_storage)
    excluded = PurePosixPath(inside).parts[0] if inside else None
    if excluded is not None and excluded != inside:
        # The output is deeper (INPUT/cam/out): the camera stays, its listing skips the output.
        excluded = None
    return [f for f in folders if f != excluded], excluded


def media_files(camera_storage, output_storage) -> Iterator:
    """Every file of the camera (``ObjectInfo``), without the output folder when it lies inside."""
    inside = output_key_inside(camera_storage, output_storage)
    for info in camera_storage.list():
        if inside is None or not (info.key == inside or info.key.startswith(inside + "/")):
            yield info


def build_manifest(
    camera_storage,
    camera_id: str,
    output_storage,
    *,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
    burst_gap_s: float = 3.0,
    burst_max_frames: int = 30,
    warn: Callable[[str], None] | None = None,
) -> tuple[pa.Table, dict]:
    """The camera's ``media`` table and figures about how it was built.

    Bursts (the frames of one trigger) are assigned over the whole camera each time, from the camera's
    own burst counter where it writes one (Reconyx MakerNotes, "Seq 2/3" texts) and EXIF time: a new
    file can join or open a burst, so they are never taken from the cache. ``warn`` gets one line per
    kind of file left out (see the module docstring).
    """
    previous = {}
    if output_storage.exists(cache_key(camera_id)):
        cached = output_storage.read_parquet(cache_key(camera_id))
        previous = {row["file_path"]: row for row in cached.to_pylist()}
    listed = list(media_files(camera_storage, output_storage))
    files = [info for info in listed if media_type_for(info.key)]
    skipped = _skipped_files(camera_storage, listed, output_key_inside(camera_storage, output_storage))
    reused, todo = [], []
    for info in files:
        old = previous.get(info.key)
        # A video probed before frame rates were recorded is probed again for it.
        stale = old and old["media_type"] == "video" and old["status"] == "ok" and not old.get("frame_rate")
        # An S3 file probed when LastModified still stood in for a missing capture time, too.
        stale = stale or (old and camera_storage.is_s3 and old["timestamp_source"] == "file_mtime")
        if old and not stale and old["bytes"] == info.size and old["mtime"] == info.mtime:
            reused.append(old)
        else:
            todo.append(info)

    def probe(info):
        try:
            return _probe(info)
        except MediaReadError as err:  # the S3 download: the file itself was never seen
            return {**unread_row(camera_id, info.key, media_type_for(info.key), err), "mtime": info.mtime}

    def _probe(info):
        with _local_copy(camera_storage, info.key) as path:
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
        **{f"skipped_{kind}": len(keys) for kind, keys in skipped.items()},
    }
    for kind, keys in skipped.items():
        if keys and warn is not None and kind in SKIPPED_WHY:
            warn(f"camera {camera_id}: {len(keys)} {SKIPPED_WHY[kind]} (e.g. {keys[0]!r})")
    return manifest, figures


# The warning line of each kind of file left out (``not_media``, a card's stray files, is only counted).
SKIPPED_WHY = {
    "heic": "HEIC/HEIF/AVIF photos are not processed: no decoder for them here; convert them to JPEG",
    "hidden": "hidden files (names starting with '.') with a media extension are not processed: rename them to include them",
    "broken_links": "links point to files that do not exist and are not processed",
}


def _skipped_files(camera_storage, listed, output_key: str | None) -> dict[str, list[str]]:
    """Keys of the files left out, by kind: see :data:`SKIPPED_WHY`."""
    suffix = lambda key: PurePosixPath(key).suffix.lower()  # noqa: E731
    other = [i.key for i in listed if not media_type_for(i.key)]
    skipped = {
        "heic": [k for k in other if suffix(k) in UNSUPPORTED_IMAGE_EXTENSIONS],
        "not_media": [k for k in other if suffix(k) not in UNSUPPORTED_IMAGE_EXTENSIONS],
        "hidden": [],
        "broken_links": [],
    }
    if camera_storage.is_s3:
        return skipped
    root = camera_storage.local_path()
    media_suffixes = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | UNSUPPORTED_IMAGE_EXTENSIONS
    for folder, dirs, names in os.walk(root):
        if output_key is not None:
            dirs[:] = [d for d in dirs if (Path(folder) / d).relative_to(root).as_posix() != output_key]
        for name in names + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink() and not path.exists():
                skipped["broken_links"].append(key)
            elif any(part.startswith(".") for part in PurePosixPath(key).parts) and suffix(key) in media_suffixes:
                skipped["hidden"].append(key)
    return {kind: sorted(keys) for kind, keys in skipped.items()}


@contextlib.contextmanager
def _local_copy(camera_storage, key: str):
    """``camera_storage.local_copy`` with the download (S3) retried; a local file is read by the probe."""
    with contextlib.ExitStack() as stack:
        yield read_retrying(lambda: stack.enter_context(camera_storage.local_copy(key)), key)
