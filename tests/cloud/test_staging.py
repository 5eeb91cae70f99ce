"""Staging camera cards to S3 (resources.staging) against a moto server: content-addressed (a re-run
and a second copy of a card send nothing), multipart and resumable, one key one content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from resources.staging import MANIFEST, StagingError, stage_cards

BUCKET = "odins-ravne-staging"
ROOT = f"s3://{BUCKET}/season/cards"
MiB = 1024 * 1024


@pytest.fixture()
def s3(moto_endpoint):
    moto_reset(moto_endpoint)
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def card(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def staged(s3) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="season/cards/").get("Contents", [])
    return {o["Key"][len("season/cards/") :]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_cards_are_staged_once_with_their_sha256(s3, tmp_path):
    cam_a = card(tmp_path / "cards" / "cam-a", {"IMG_0001.JPG": b"a1", "DCIM/IMG_0002.JPG": b"a2", ".DS_Store": b"x"})
    cam_b = card(tmp_path / "cards" / "cam-b", {"IMG_0001.JPG": b"b1"})
    progress: list[tuple[str, int, int]] = []

    first = stage_cards([("cam-a", cam_a), ("cam-b", cam_b)], ROOT, progress=lambda *a: progress.append(a))
    assert (first.cameras, first.files, first.uploaded, first.sent_bytes, first.copied, first.present) == (2, 3, 3, 6, 0, 0)
    assert first.uploaded_keys == ["cam-a/DCIM/IMG_0002.JPG", "cam-a/IMG_0001.JPG", "cam-b/IMG_0001.JPG"]
    objects = staged(s3)
    assert {k: v for k, v in objects.items() if k != MANIFEST} == {"cam-a/IMG_0001.JPG": b"a1", "cam-a/DCIM/IMG_0002.JPG": b"a2", "cam-b/IMG_0001.JPG": b"b1"}
    head = s3.head_object(Bucket=BUCKET, Key="season/cards/cam-a/IMG_0001.JPG")
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"a1").hexdigest()
    assert sum(n for phase, n, _ in progress if phase == "upload") == 6 and {t for *_, t in progress} == {6}
    assert first.line().startswith(f"staged 2 camera(s), 3 file(s) (6 B) to {ROOT}: 3 uploaded (6 B sent), 0 copied")

    again = stage_cards([("cam-a", cam_a), ("cam-b", cam_b)], ROOT)
    assert (again.uploaded, again.sent_bytes, again.copied, again.present) == (0, 0, 0, 3)

    # Without the manifest (a run stopped before writing it) each object is asked once, and still nothing is sent.
    s3.delete_object(Bucket=BUCKET, Key=f"season/cards/{MANIFEST}")
    third = stage_cards([("cam-a", cam_a), ("cam-b", cam_b)], ROOT)
    assert (third.uploaded, third.sent_bytes, third.present) == (0, 0, 3)


def test_a_second_copy_of_a_card_is_copied_inside_s3_not_uploaded(s3, tmp_path):
    files = {"IMG_0001.JPG": b"one", "IMG_0002.JPG": b"two"}
    first = stage_cards([("cam-a", card(tmp_path / "a" / "cam-a", files))], ROOT)
    assert first.sent_bytes == 6
    # The same card copied to another camera's folder, and the same card given twice for one camera.
    copy = card(tmp_path / "copy" / "cam-c", files)
    twice = card(tmp_path / "again" / "cam-a", files)
    second = stage_cards([("cam-a", twice), ("cam-c", copy), ("cam-a", tmp_path / "a" / "cam-a")], ROOT)
    assert (second.files, second.uploaded, second.sent_bytes, second.copied, second.present) == (6, 0, 0, 2, 2)
    assert staged(s3)["cam-c/IMG_0002.JPG"] == b"two"
    assert s3.head_object(Bucket=BUCKET, Key="season/cards/cam-c/IMG_0002.JPG")["Metadata"]["sha256"] == hashlib.sha256(b"two").hexdigest()


def test_one_key_from_two_different_files_is_refused_before_anything_is_sent(s3, tmp_path):
    one = card(tmp_path / "card1" / "cam-a", {"IMG_0001.JPG": b"visit 1"})
    two = card(tmp_path / "card2" / "cam-a", {"IMG_0001.JPG": b"visit 2"})
    with pytest.raises(StagingError) as err:
        stage_cards([("cam-a", one), ("cam-a", two)], ROOT)
    assert str(err.value) == (
        f"cam-a/IMG_0001.JPG would be staged from two different files, {one / 'IMG_0001.JPG'} and {two / 'IMG_0001.JPG'}: "
        "rename one, or give only one of the cards for this camera"
    )
    assert staged(s3) == {}


def test_an_interrupted_multipart_upload_resumes_with_the_missing_parts_only(s3, tmp_path):
    data = os.urandom(12 * MiB)  # three parts of 5 MiB (S3's smallest), the last 2 MiB
    cam = card(tmp_path / "cam-v", {"VID_0001.MP4": data, "IMG_0001.JPG": b"small"})
    sent: list[int] = []

    def stop_after_first_part(phase, n, total):
        if phase == "upload" and n == 5 * MiB:
            sent.append(n)
            raise KeyboardInterrupt  # Ctrl-C while the card is being uploaded

    with pytest.raises(KeyboardInterrupt):
        # One worker: the small photo (first by key) is staged, then the video stops after its first part.
        stage_cards([("cam-v", cam)], ROOT, part_size=5 * MiB, multipart_threshold=5 * MiB, workers=1, progress=stop_after_first_part)
    assert sent == [5 * MiB] and "cam-v/VID_0001.MP4" not in staged(s3)

    resumed = stage_cards([("cam-v", cam)], ROOT, part_size=5 * MiB, multipart_threshold=5 * MiB)
    assert (resumed.present, resumed.uploaded, resumed.resumed_parts, resumed.sent_bytes) == (1, 1, 1, 7 * MiB)
    assert staged(s3)["cam-v/VID_0001.MP4"] == data
    head = s3.head_object(Bucket=BUCKET, Key="season/cards/cam-v/VID_0001.MP4")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert stage_cards([("cam-v", cam)], ROOT, part_size=5 * MiB, multipart_threshold=5 * MiB).sent_bytes == 0


def test_a_root_that_is_not_an_s3_prefix_is_refused(tmp_path):
    with pytest.raises(StagingError, match=r"^/tmp/x is not an s3://BUCKET/PREFIX to stage the cards under$"):
        stage_cards([("cam-a", tmp_path)], "/tmp/x")
