"""Motion proposals: where in each frame of a burst something moved, with no model at all.

A camera trap shoots its burst from a fixed position, so the per-pixel median of the burst is the
empty scene, and what differs from it in one frame is what moved there. That finds the small, grey,
low-contrast animals of night-time infrared frames that a daylight-trained detector misses. What
fools a naive frame difference, and the guard for each:

- **Info bars** the camera prints at the top and bottom (time, temperature, the "2/3" counter) change
  from frame to frame. They are found as bands of near-uniform rows touching the top or bottom edge of
  the median image and masked (:func:`find_info_bars`).
- **Camera shake** (wind on the post): every frame is aligned to the middle one by phase correlation
  on windowed images, bars masked, fine frequencies (noise) damped. Several correlation peaks are tried (over a plain
  background the animal makes a peak of its own) and a shift is kept only where it really lowers the
  frame's median difference to the reference. The difference is then taken against the local
  min/max of the background, so a residual sub-pixel misalignment along edges does not light up.
- **Exposure change** between frames (the IR flash warming up, auto-exposure, a cloud): each frame is
  mapped onto the reference frame by a robust straight-line fit of its pixels (orthogonal
  regression, animal and clipped pixels left out); the smooth illumination field left after that (a
  robust quadratic surface plus block medians) is subtracted; each frame gets its own noise level, so
  an underexposed frame, brightened, does not light up all over; a pixel clipped to black in a frame
  cannot count as brighter there, nor a saturated one as darker.
- **Waving vegetation**: the threshold at each pixel rises with that pixel's own spread over the burst
  (the median over frames of its deviation). A leaf moving in most frames has a wide spread; an animal
  covers any one pixel in few frames, so the median ignores it. Regions must also be compact (filled
  fraction of their box) and large enough.
- **Global change** (a frame much brighter in one part, a failed alignment): a frame where a large part
  changed yields no proposal at all rather than one huge box.
- **An animal that does not move** is part of the median and gives no proposal: finding it is the
  detector's job, and the fusion keeps the detector's boxes as they are.

Frames may be RGB or grayscale, any size (all frames of a burst the same aspect); they are reduced to
``work_width`` pixels wide grayscale first, so decode them in draft mode (``media.load_image`` with
``max_side``). Boxes are normalized ``[x, y, w, h]``, origin top-left, like detector boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image
from scipy import ndimage


@dataclass(frozen=True)
class MotionConfig:
    work_width: int = 256  # working resolution (pixels wide); costs grow with its square
    blur_sigma: float = 1.0  # pre-smoothing of the frames, working pixels: sensor noise down
    threshold_k: float = 4.5  # changed where the difference exceeds k noise sigmas...
    min_threshold: float = 10.0  # ...and at least this many grey levels (of 255)
    spread_k: float = 2.5  # ...and k times the pixel's own spread over the burst (vegetation)
    min_area: float = 0.0006  # smallest region, fraction of the frame
    max_area: float = 0.5  # a larger region is a global change, not an animal
    max_changed: float = 0.35  # a frame with more changed than this is skipped (light, shake)
    min_fill: float = 0.25  # changed pixels / box pixels: compact animals, not scattered leaves
    merge_px: int = 3  # fragments closer than this (working pixels) are one region
    max_shift: float = 0.08  # largest believable shake, fraction of the frame width
    bar_max: float = 0.15  # info bars are at most this fraction of the height, per edge
    bar_uniform: float = 0.55  # a bar row has at least this fraction of pixels at its row's level
    illumination_blocks: int = 6  # blocks across for the smooth illumination field

    @classmethod
    def from_mapping(cls, values: dict | None) -> "MotionConfig":
        return config_from_mapping(cls, values, "bursts.motion")


def config_from_mapping(cls, values: dict | None, where: str):
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} under '{where}': allowed keys are {sorted(known)}")
    for name, value in values.items():
        default = known[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"'{where}.{name}' must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"'{where}.{name}' must be a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise ValueError(f"'{where}.{name}' must be a whole number, got {value!r}")
            values[name] = type(default)(value)
    return cls(**values)


@dataclass(frozen=True)
class Proposal:
    """A region that changed in one frame of the burst."""

    frame: int
    bbox: tuple[float, float, float, float]  # normalized x, y, w, h; origin top-left
    score: float  # 0..1, how far above its threshold the region stands (0.5 = twice the threshold)
    area: float  # changed pixels, fraction of the frame
    fill: float  # changed pixels / box pixels


@dataclass
class MotionResult:
    proposals: list[list[Proposal]]  # per frame
    shifts: list[tuple[float, float]] = field(default_factory=list)  # (dy, dx) working px, applied
    gains: list[tuple[float, float]] = field(default_factory=list)  # (a, b): frame*a + b ~ reference
    bars: tuple[int, int] = (0, 0)  # rows masked at top and bottom, working px
    changed: list[float] = field(default_factory=list)  # changed fraction per frame before filtering
    skipped: list[bool] = field(default_factory=list)  # frame skipped as a global change
    work_shape: tuple[int, int] = (0, 0)


def to_gray(frame: np.ndarray, width: int) -> np.ndarray:
    """Float32 luminance at ``width`` pixels wide (never enlarged), by area averaging."""
    if frame.ndim == 3:
        if frame.shape[2] == 1:
            frame = frame[..., 0]
        else:
            frame = np.ascontiguousarray(frame[..., :3])
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images (as media.load_image returns), got {frame.dtype}")
    h, w = frame.shape[:2]
    img = Image.fromarray(frame)
    if w > width:
        # Area averaging first, colour to grey after: the conversion then runs on few pixels.
        img = img.resize((width, max(1, round(h * width / w))), Image.Resampling.BOX)
    img = img.convert("L") if img.mode != "L" else img
    return np.asarray(img, dtype=np.float32)


def find_info_bars(median: np.ndarray, *, max_fraction: float, uniform: float) -> tuple[int, int]:
    """Rows to mask at the top and the bottom: bands of near-uniform rows touching the edge.

    A bar is a flat fill (black, or the maker's colour) with some text on it, so most pixels of each
    of its rows sit at the row's own level. Natural scene rows rarely do; a dark, flat sky that does
    is masked with it, which costs nothing since nothing there could be told from the background.
    """
    height = median.shape[0]
    limit = max(0, int(height * max_fraction))
    row_level = np.median(median, axis=1, keepdims=True)
    flat = (np.abs(median - row_level) <= 6.0).mean(axis=1) >= uniform

    def band(rows: np.ndarray) -> int:
        n = 0
        while n < limit and flat[rows[n]]:
            n += 1
        # A bar of a single row is a hard edge of the scene, not a bar. A real one gets a margin row:
        # JPEG ringing and the resize spread its edge over the next row.
        return 0 if n < 2 else min(limit, n + 1)

    return band(np.arange(height)), band(np.arange(height - 1, -1, -1))


def _noise_weight(shape: tuple[int, int]) -> np.ndarray:
    """Weights for the cross-power spectrum (rfft layout): phase correlation whitens every
    frequency alike, so the finest ones, where sensor noise lives, are damped."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-(fx**2 + fy**2) / (2 * 0.15**2))


def _phase_shifts(ref_f: np.ndarray, img: np.ndarray, window: np.ndarray, weight: np.ndarray,
                  count: int = 4) -> list[tuple[float, float]]:
    """Candidate translations (dy, dx) that map ``img`` onto the reference, strongest first.

    Phase correlation has one peak per thing that moved as a whole: the scene (camera shake) and,
    over a plain background, the animal itself. The caller keeps the candidate that really brings
    the frame onto the reference, so several peaks are returned, each refined to sub-pixel.
    """
    spec = ref_f * np.conj(np.fft.rfft2(img * window))
    spec *= weight / (np.abs(spec) + 1e-9)
    corr = np.fft.irfft2(spec, s=img.shape)
    # The strongest few peaks, at least 3 pixels apart (a peak's shoulders are not other peaks).
    flat_corr = corr.ravel()
    top = np.argpartition(flat_corr, -64)[-64:]
    peaks: list[int] = []
    width = corr.shape[1]
    for index in top[np.argsort(flat_corr[top])[::-1]]:
        y, x = divmod(int(index), width)
        if all(abs(y - py) >= 3 or abs(x - px) >= 3 for py, px in (divmod(q, width) for q in peaks)):
            peaks.append(int(index))
            if len(peaks) == count:
                break
    out = []
    for flat_index in peaks:
        peak = np.unravel_index(int(flat_index), corr.shape)
        shift = []
        for axis, p in enumerate(peak):
            n = corr.shape[axis]
            prev_idx, next_idx = list(peak), list(peak)
            prev_idx[axis], next_idx[axis] = (p - 1) % n, (p + 1) % n
            c0, cm, cp = corr[peak], corr[tuple(prev_idx)], corr[tuple(next_idx)]
            denom = cm - 2 * c0 + cp
            value = p + (0.5 * (cm - cp) / denom if denom < 0 else 0.0)
            shift.append(value - n if value > n / 2 else value)
        out.append((float(shift[0]), float(shift[1])))
    return out


def _grown(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=2) if mask.any() else mask


def _standardized(img: np.ndarray, where: np.ndarray) -> np.ndarray:
    values = img[where] if where.any() else img.ravel()
    centre = float(np.median(values))
    spread = float(np.percentile(values, 75) - np.percentile(values, 25)) or 1.0
    return (img - centre) / spread


def _affine_to(ref: np.ndarray, img: np.ndarray, valid: np.ndarray, step: int = 3) -> tuple[float, float]:
    """``a, b`` such that ``img * a + b`` matches ``ref`` in brightness (an exposure change).

    The frames are aligned, so pixels correspond: a straight line through (img, ref) pairs, fitted
    twice, the second time without the pairs far off the first line (the animal, a leaf).
    Clipped pixels (black or saturated in either image) are left out: they do not follow the line.
    """
    x, y = img[::step, ::step], ref[::step, ::step]
    keep = valid[::step, ::step] & (x > 3) & (x < 252) & (y > 3) & (y < 252)
    x, y = x[keep].astype(np.float64), y[keep].astype(np.float64)
    if x.size < 50 or np.ptp(x) < 1e-3:
        return 1.0, 0.0
    inliers = np.ones(x.size, bool)
    a, b = 1.0, 0.0
    for _ in range(2):
        # Orthogonal regression, not y-on-x least squares: both images carry the same sensor noise,
        # and least squares would flatten the slope by it (regression dilution).
        xi, yi = x[inliers], y[inliers]
        mx, my = xi.mean(), yi.mean()
        sxx, syy, sxy = ((xi - mx) ** 2).mean(), ((yi - my) ** 2).mean(), ((xi - mx) * (yi - my)).mean()
        if abs(sxy) < 1e-9:
            return 1.0, 0.0
        a = (syy - sxx + np.sqrt((syy - sxx) ** 2 + 4 * sxy**2)) / (2 * sxy)
        b = my - a * mx
        off = np.abs(y - (a * x + b))
        inliers = off <= max(3.0 * 1.4826 * float(np.median(off)), 1e-3)
    if not 0.2 <= a <= 5.0:  # not an exposure change: keep the frame as it is
        return 1.0, 0.0
    return float(a), float(b)


def _quadratic_field(residual: np.ndarray, valid: np.ndarray, step: int = 6) -> np.ndarray:
    """A robust quadratic surface through a residual: a light ramp, a flash falling off towards
    the corners. Fitted on every ``step``-th pixel, twice, the second time without the pixels the
    first fit left far off (an animal, a leaf)."""
    h, w = residual.shape
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    keep = valid[::step, ::step].ravel()
    x, y = xx.ravel()[keep] / w - 0.5, yy.ravel()[keep] / h - 0.5
    r = residual[::step, ::step].ravel()[keep]
    if r.size < 12:
        return np.zeros_like(residual)
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    inliers = np.ones(r.size, bool)
    for _ in range(2):
        used = design[inliers]
        # Normal equations: six unknowns, so a 6x6 solve instead of a least-squares factorization.
        coef = np.linalg.solve(used.T @ used + 1e-6 * np.eye(6), used.T @ r[inliers])
        off = np.abs(r - design @ coef)
        inliers = off <= max(3.0 * 1.4826 * float(np.median(off)), 1e-3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = gx / w - 0.5, gy / h - 0.5
    c = coef.astype(np.float32)
    return c[0] + c[1] * gx + c[2] * gy + c[3] * gx * gx + c[4] * gx * gy + c[5] * gy * gy


def _smooth_fields(residuals: np.ndarray, valid: np.ndarray, blocks: int) -> np.ndarray:
    """The smooth part (illumination) of each frame's residual against the background.

    A robust quadratic surface takes ramps and fall-off, block medians what is left (a patch of
    light). Block medians rather than a blur: an animal moves the median of its block little, where
    a mean or a Gaussian would carve a halo around it. Every second pixel is enough for a median.
    """
    n, h, w = residuals.shape
    fields_ = np.stack([_quadratic_field(r, valid) for r in residuals])
    rest = residuals - fields_
    # Outside the scene (bars, shifted-in borders) the residual counts as 0: no correction there.
    sub = np.where(valid[::2, ::2], rest[:, ::2, ::2], 0.0)
    bx = blocks
    by = max(1, round(blocks * h / w))
    bh, bw = sub.shape[1] // by, sub.shape[2] // bx
    cells = sub[:, : by * bh, : bx * bw].reshape(n, by, bh, bx, bw).transpose(0, 1, 3, 2, 4).reshape(n, by, bx, -1)
    grid = np.median(cells, axis=3)
    blocks_ = np.stack([ndimage.zoom(g, (h / by, w / bx), order=1, mode="nearest", grid_mode=True)[:h, :w] for g in grid])
    return fields_ + blocks_


_EIGHT = np.ones((3, 3), bool)


def _median0(stack: np.ndarray) -> np.ndarray:
    """Per-pixel median over the first axis. For the few frames of a burst an elementwise
    compare-and-swap network is an order of magnitude faster than ``np.median``'s partition."""
    n = stack.shape[0]
    if n > 12:
        return np.median(stack, axis=0)
    a = list(stack)
    upper = n // 2
    # After p bubble passes the last p positions hold the p largest values in order; upper + 1
    # passes settle every position from (n - upper - 1) up, which includes the middle one(s).
    for done in range(upper + 1):
        for j in range(n - 1 - done):
            lo, hi = np.minimum(a[j], a[j + 1]), np.maximum(a[j], a[j + 1])
            a[j], a[j + 1] = lo, hi
    if n % 2:
        return a[upper]
    return (a[upper - 1] + a[upper]) / 2


def _regions(mask, diff, threshold, offset, frame, shape, config: MotionConfig) -> list[Proposal]:
    """Denoise a changed-pixel mask, group it into regions and keep the animal-like ones."""
    h, w = shape
    mask = ndimage.binary_opening(mask, _EIGHT)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask, _EIGHT, iterations=2))
    grouping = ndimage.binary_dilation(mask, iterations=config.merge_px) if config.merge_px else mask
    grouped, count = ndimage.label(grouping, structure=_EIGHT)
    if not count:
        return []
    labels = np.where(mask, grouped, 0)
    out = []
    for label_index, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        region = labels[sl] == label_index
        area = int(region.sum())
        if area < config.min_area * h * w or area > config.max_area * h * w:
            continue
        fill = area / region.size
        if fill < config.min_fill:
            continue
        ratio = float(np.median(diff[sl][region] / threshold[sl][region]))
        y0, y1 = sl[0].start + offset[0], sl[0].stop + offset[0]
        x0, x1 = sl[1].start + offset[1], sl[1].stop + offset[1]
        out.append(
            Proposal(
                frame=frame,
                bbox=(x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h),
                score=float(np.clip(1.0 - 1.0 / max(ratio, 1.0), 0.0, 1.0)),
                area=area / (h * w),
                fill=float(fill),
            )
        )
    return out


def propose(frames: list[np.ndarray], config: MotionConfig | None = None) -> MotionResult:
    """Motion proposals for every frame of one burst (see the module doc for the method)."""
    config = config or MotionConfig()
    n = len(frames)
    if n < 3:
        # A median of two frames is their mean: it cannot tell which frame the subject is in.
        return MotionResult(proposals=[[] for _ in frames], skipped=[True] * n)
    gray = [to_gray(f, config.work_width) for f in frames]
    shape = gray[0].shape
    for i, g in enumerate(gray):
        if g.shape != shape:
            # Different sizes in one burst: the camera changed mode; compare at the first frame's size.
            gray[i] = np.asarray(Image.fromarray(g).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    h, w = shape
    stack = np.stack(gray)

    top, bottom = find_info_bars(_median0(stack), max_fraction=config.bar_max, uniform=config.bar_uniform)
    scene = np.ones(shape, bool)
    scene[:top] = False
    if bottom:
        scene[h - bottom :] = False

    # Alignment: bars stay put when the camera shakes, so they are flattened out before correlating.
    ref_index = n // 2
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fill_value = float(np.median(stack[ref_index][scene])) if scene.any() else 0.0
    flat = np.where(scene, stack, fill_value)
    ref_f = np.fft.rfft2(flat[ref_index] * window)
    weight = _noise_weight((h, w))
    valid = np.ones((n, h, w), bool)
    shifts: list[tuple[float, float]] = []
    max_shift = config.max_shift * w
    # For judging a shift: smoothed (sensor noise would hide the gain) and standardized (a frame
    # exposed differently must not look better merely by sliding its dark parts elsewhere).
    judge = scene[::2, ::2]
    smooth = np.stack([_standardized(ndimage.uniform_filter(g, 3)[::2, ::2], judge) for g in stack])
    for i in range(n):
        best = (0.0, 0.0)
        if i != ref_index:
            # The median error, so that the animal (which moved by itself) does not decide it.
            # Judged at half resolution: the images are smooth, and every candidate costs a shift.
            best_error = float(np.median(np.abs(smooth[i] - smooth[ref_index])[judge]))
            for dy, dx in _phase_shifts(ref_f, flat[i], window, weight):
                if max(abs(dy), abs(dx)) < 0.5 or max(abs(dy), abs(dx)) > max_shift:
                    continue
                moved = ndimage.shift(smooth[i], (dy / 2, dx / 2), order=1, mode="nearest")
                error = float(np.median(np.abs(moved - smooth[ref_index])[judge]))
                if error < 0.97 * best_error:
                    best, best_error = (dy, dx), error
        if best != (0.0, 0.0):
            stack[i] = ndimage.shift(stack[i], best, order=1, mode="nearest")
            # What lies outside the shifted frame, and the bars that moved with the frame, are
            # not scene in this frame.
            inside = ndimage.shift(scene.astype(np.float32), best, order=0, cval=0.0) > 0.5
            valid[i] = ndimage.binary_erosion(inside, iterations=1, border_value=0)
        shifts.append(best)
    # Clipped pixels: an exposure step pushes a dark corner to black (or a bright one to white) in
    # one frame, and after normalization that corner looks brighter (darker) than the background
    # although nothing moved. So a pixel black in a frame may not count as brighter there, and a
    # saturated one not as darker; a black animal on grey ground still counts as darker.
    black = np.stack([_grown(f <= 2.0) for f in stack])
    white = np.stack([_grown(f >= 253.0) for f in stack])
    common = scene & valid.all(axis=0)
    fit_mask = common & ~(black | white).any(axis=0)  # pixels that follow a frame's exposure

    if config.blur_sigma > 0:
        stack = np.stack([ndimage.gaussian_filter(s, config.blur_sigma) for s in stack])

    # Exposure: every frame onto the reference frame's brightness. Onto one frame, not onto a median
    # of differently exposed frames: such a median follows a different frame in the dark and in the
    # bright parts, so no straight line maps a frame onto it.
    gains = []
    for i in range(n):
        a, b = (1.0, 0.0) if i == ref_index else _affine_to(stack[ref_index], stack[i], fit_mask)
        stack[i] = stack[i] * a + b
        gains.append((a, b))
    background = _median0(stack)
    stack -= _smooth_fields(stack - background, fit_mask, config.illumination_blocks)
    background = _median0(stack)

    # Difference against the local range of the background: a pixel is changed only if it is
    # brighter than every background pixel around it, or darker than every one.
    bg_hi = ndimage.maximum_filter(background, size=3)
    bg_lo = ndimage.minimum_filter(background, size=3)
    diff = np.maximum(np.maximum(np.where(black, 0.0, stack - bg_hi), np.where(white, 0.0, bg_lo - stack)), 0.0)
    # Each pixel's spread over the burst, spread to its neighbours (a leaf moves by a few pixels).
    spread = ndimage.maximum_filter(_median0(np.abs(stack - background)), size=5)
    floor = config.spread_k * spread

    proposals: list[list[Proposal]] = []
    changed_fractions, skipped = [], []
    total = float(common.sum()) or 1.0
    for i in range(n):
        # Noise per frame: a frame brightened by the normalization (it was underexposed) carries its
        # noise amplified by the same gain, and would light up all over at the others' threshold.
        noise = 1.4826 * float(np.median(np.abs(stack[i][fit_mask] - background[fit_mask]))) if fit_mask.any() else 1.0
        threshold = np.maximum(max(config.min_threshold, config.threshold_k * noise), floor)
        mask = (diff[i] > threshold) & common & valid[i]
        changed = float(mask.sum()) / total
        changed_fractions.append(changed)
        if changed > config.max_changed:
            proposals.append([])
            skipped.append(True)
            continue
        skipped.append(False)
        frame_props: list[Proposal] = []
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            # Clean and label only around what changed: most of a frame is still.
            m = 4 + 2 * config.merge_px
            oy, ox = max(0, rows[0] - m), max(0, cols[0] - m)
            win = (slice(oy, min(h, rows[-1] + m + 1)), slice(ox, min(w, cols[-1] + m + 1)))
            frame_props = _regions(mask[win], diff[i][win], threshold[win], (oy, ox), i, (h, w), config)
        frame_props.sort(key=lambda p: -p.score)
        proposals.append(frame_props)
    return MotionResult(
        proposals=proposals,
        shifts=shifts,
        gains=gains,
        bars=(top, bottom),
        changed=changed_fractions,
        skipped=skipped,
        work_shape=shape,
    )
