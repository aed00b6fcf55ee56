"""What a weld is once decoded: raw signals, ready for the encoders and the plots.

Readers (`fusion_core.io.containers`) produce `Weld`s from folders, zips or single files; the
synthetic generator (`fusion_core.training.synth`) writes welds that read back into the same
thing. Nothing here depends on torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..vocab import AUDIO_RATE_HZ, CLASS_NAMES, MODALITIES, SENSOR_RATE_HZ, class_code_of

@dataclass
class Weld:
    """One decoded weld. Absent modalities are None (images: empty list), whether the weld had
    no such file or its file could not be read (`unreadable` says why)."""

    weld_id: str                                  # part number (folder / file stem)
    source: str                                   # where it came from, for messages
    video: np.ndarray | None = None               # (F, H, W, 3) uint8 RGB, F kept frames
    video_times: np.ndarray | None = None         # (F,) seconds of each kept frame
    video_fps: float | None = None                # fps of the original stream
    audio: np.ndarray | None = None               # (N,) float32 mono in [-1, 1] at 16 kHz
    sample_rate: int = AUDIO_RATE_HZ
    sensor: pd.DataFrame | None = None            # column "t" (s) + SENSOR_CHANNELS
    images: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 RGB each
    image_names: list[str] = field(default_factory=list)
    truth: dict | None = None                     # truth.json when present
    digest: str = ""                              # sha256 over the raw input bytes
    # (width, height) of each photo as stored, before downscaling: truth.json regions and
    # other boxes in the file's pixels scale by images[i].shape / image_sizes[i].
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    # Photos the weld holds beyond the budget's `max_photos_decoded`, not read (the first ones
    # in natural name order are): a UI says "N more photos not shown".
    images_skipped: int = 0
    # Files that were there but could not be read, by modality ("video", …, or "truth"): one
    # printable line each, "<file>: <problem>" as an InputError would say it ("; " between
    # photos). An unreadable modality is absent (`missing`); "image" can also name photos
    # skipped beside others that were read (then "image" is still `present`).
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def class_code(self) -> int | None:
        return class_code_of(self.weld_id)

    @property
    def class_name(self) -> str | None:
        code = self.class_code
        return None if code is None else CLASS_NAMES[code]

    @property
    def present(self) -> list[str]:
        have = {
            "video": self.video is not None and len(self.video) > 0,
            "image": len(self.images) > 0,
            "audio": self.audio is not None and len(self.audio) > 0,
            "sensor": self.sensor is not None and len(self.sensor) > 0,
        }
        return [m for m in MODALITIES if have[m]]

    @property
    def missing(self) -> list[str]:
        return [m for m in MODALITIES if m not in self.present]

    @property
    def duration(self) -> float:
        """Seconds covered by the time-based modalities (longest of them).

        Each reader gives the span its data supports and refuses one longer than
        `Limits.max_duration_s` (see `fusion_core.io.decode`), so for a weld from the readers
        this is within the budget: a buffer sized by it is bounded."""
        spans = [0.0]
        if self.audio is not None and len(self.audio):
            spans.append(len(self.audio) / self.sample_rate)
        if self.sensor is not None and len(self.sensor):
            t = self.sensor["t"].to_numpy()
            step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / SENSOR_RATE_HZ
            spans.append(float(t[-1] - t[0]) + step)
        if self.video is not None and self.video_times is not None and len(self.video_times):
            step = 1.0 / self.video_fps if self.video_fps else 0.0
            spans.append(float(self.video_times[-1]) + step)
        return max(spans)
