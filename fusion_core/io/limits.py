"""What the readers refuse, so that one upload cannot exhaust the machine."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024 ** 3


@dataclass(frozen=True)
class Limits:
    """Bounds on what one read may take; every reader is given one."""

    max_total_bytes: int = 2 * GiB      # uncompressed bytes of a zip; bytes read per weld
    max_entries: int = 10_000           # entries in a zip
    max_ratio: float = 100.0            # uncompressed/compressed for a zip entry > 1 MiB
    max_files: int = 200_000            # files scanned under a folder
    max_depth: int = 8                  # folder levels scanned
    max_rows: int = 200_000             # sensor CSV data rows
    max_images: int = 64                # photos per weld
    max_audio_s: float = 4 * 3600.0     # audio duration
    max_video_frames: int = 500_000     # frames in a video stream
    max_image_pixels: int = 60_000_000  # pixels of one photo, before decoding


DEFAULT_LIMITS = Limits()
