"""Media for the fault corpus (tests/faults): small videos written with ffmpeg, in the layouts cameras write."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np


def write_video(dest: Path, *, frames: int = 20, fps: int = 10, size: tuple[int, int] = (160, 96),
                creation_time: str | None = "2026-06-01T05:30:00.000000Z", faststart: bool = False) -> Path:
    """An H.264 MP4 of ``frames`` frames at ``fps``: a grey ramp with a bright square moving across.

    ``faststart`` puts the index (moov) first, as cameras that stream to the card do: such a clip
    cut short still decodes up to the cut.
    """
    params = ["-threads", "1"] + (["-metadata", f"creation_time={creation_time}"] if creation_time else [])
    params += ["-movflags", "+faststart"] if faststart else []
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(dest), size, fps=fps, quality=6, macro_block_size=8,
                                         output_params=params, ffmpeg_log_level="error")
    writer.send(None)
    width, height = size
    for i in range(frames):
        frame = np.tile(np.linspace(40, 200, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
        left = (width - 24) * i // max(1, frames - 1)
        frame[30:54, left:left + 24] = 255
        writer.send(frame)
    writer.close()
    return dest
