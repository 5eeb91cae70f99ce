"""Composites for the detector's training (gpu_ops.composites): the box is where the pasted animal
is, an infrared frame stays grey, the same seed gives the same frame; the cut-outs' pins.

Built on constructed frames and cut-outs whose right answer is known: a textured background and an
opaque disc with a transparent surround.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gpu_ops.composites import CompositeConfig, composite
from gpu_ops.finetune import Sample
from odins_ravne_assets.sample_data.sources import CUTOUTS, _cached_problems, default_sources_dir

# No noise, no blur, near-lossless JPEG: what changed in the frame is the paste alone.
EXACT = CompositeConfig(second_animal=0.0, blur_per_pixel=0.0, noise=(0.0, 0.0), jpeg_quality=(100, 100))


def _frame(infrared: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:300, 0:400]
    if infrared:
        grey = (60 + 40 * x / 400 + rng.integers(0, 20, x.shape)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    base = np.stack([40 + 60 * x / 400, 110 + 40 * y / 300, np.full(x.shape, 50.0)], -1)
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


def _disc() -> np.ndarray:
    """A red disc 60 px across on a 100 x 80 transparent canvas (alpha bbox: 20..80 x 10..70)."""
    yy, xx = np.mgrid[0:80, 0:100]
    inside = (xx - 50) ** 2 + (yy - 40) ** 2 <= 30 ** 2
    rgba = np.zeros((80, 100, 4), dtype=np.uint8)
    rgba[inside] = (220, 30, 30, 255)
    return rgba


def _changed_bbox(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40)
    h, w = before.shape[:2]
    return cols.min() / w, rows.min() / h, (cols.max() - cols.min() + 1) / w, (rows.max() - rows.min() + 1) / h


def test_the_pasted_animals_box_is_where_it_shows_and_the_frames_own_boxes_are_kept():
    own = ((0.05, 0.05, 0.1, 0.1),)
    frame = _frame(infrared=False)
    for seed in range(5):
        out = composite(Sample(frame, own, ("person",)), [_disc()], np.random.default_rng(seed), EXACT)
        assert out.boxes[0] == own[0] and out.kinds == ("person", "animal")
        box = out.boxes[1]
        shown = _changed_bbox(frame, out.image)
        assert np.allclose(box, shown, atol=3 / 300), (seed, box, shown)
        if box[0] > 0 and box[0] + box[2] < 1:  # not cut by the frame's edge: a disc stays round
            assert abs(box[2] * 400 / (box[3] * 300) - 1.0) < 0.1
        assert EXACT.min_width * 0.9 <= box[2] <= EXACT.max_width * 1.05 + 1e-6


def test_a_paste_on_an_infrared_frame_is_grey_and_as_bright_as_the_ground_under_it_allows():
    frame = _frame(infrared=True)
    config = EXACT
    for seed in range(5):
        out = composite(Sample(frame), [_disc()], np.random.default_rng(seed), config)
        (x, y, w, h), = out.boxes
        region = out.image[round(y * 300) + 2:round((y + h) * 300) - 2, round(x * 400) + 2:round((x + w) * 400) - 2].astype(int)
        assert np.abs(region[..., 0] - region[..., 1]).max() <= 3 and np.abs(region[..., 1] - region[..., 2]).max() <= 3
        under = frame[round(y * 300):round((y + h) * 300), round(x * 400):round((x + w) * 400)].mean()
        # A red disc turned grey is one flat tone; its mean is the ground's times the infrared gain.
        assert config.ir_gain[0] * under * 0.8 <= region.mean() <= config.ir_gain[1] * under * 1.2


def test_the_same_seed_gives_the_same_composite_and_another_seed_another():
    frame = _frame(infrared=False)
    first = composite(Sample(frame), [_disc()], np.random.default_rng(3))
    again = composite(Sample(frame), [_disc()], np.random.default_rng(3))
    other = composite(Sample(frame), [_disc()], np.random.default_rng(4))
    assert np.array_equal(first.image, again.image) and first.boxes == again.boxes
    assert first.boxes != other.boxes


def test_an_animal_is_not_pasted_over_one_the_frame_already_has():
    frame = _frame(infrared=False)
    crowded = ((0.0, 0.0, 1.0, 1.0),)  # an animal across the whole frame: nowhere left to put another
    out = composite(Sample(frame, crowded, ("animal",)), [_disc()], np.random.default_rng(0), EXACT)
    assert out.boxes == crowded


def test_a_cut_out_without_alpha_is_refused_with_what_to_give():
    with pytest.raises(ValueError, match="RGBA"):
        composite(Sample(_frame(False)), [np.zeros((10, 10, 3), np.uint8)], np.random.default_rng(0))


def test_the_cut_outs_are_pinned_real_photo_stamps_of_land_animals_and_birds():
    assert len(CUTOUTS.members) >= 90
    for name, (member, digest) in CUTOUTS.members.items():
        assert member.startswith("./usr/share/tuxpaint/stamps/animals/") and member.endswith(".png")
        assert not any(f"/{left_out}/" in member for left_out in ("cartoon", "toys", "fish", "insects", "shellfish", "aquatic"))
        assert len(digest) == 64
    folder = default_sources_dir() / CUTOUTS.name
    if _cached_problems(CUTOUTS, folder):
        pytest.skip(f"cut-outs not cached in {folder}: python -m bench.realdata_finetune fetches them")
    for name in CUTOUTS.members:
        with Image.open(folder / name) as stamp:
            alpha = np.asarray(stamp.convert("RGBA"))[..., 3]
        assert 0.05 < (alpha > 127).mean() < 0.98, name  # cut out along the outline
