"""The readers' budget: what one read may take, so that one upload cannot exhaust the machine.

Every reader takes a `Limits` (default `DEFAULT_LIMITS`) and checks it against what it
actually reads, before allocating for it: a header's claim (a FLAC's length, a zip entry's
size, a video's frame rate) may refuse early, but is never trusted to allow anything.

The defaults fit a real weld with a wide margin. The Intel Robotic Welding dataset's welds
last 10–60 s: a ~300-row CSV at 8.6 Hz, a 16 kHz mono FLAC, 5 photos of 2000×900 and a
~30 fps AVI; one weld's files take some tens of MB. Beyond a budget the read is refused with
an `InputError` naming the file, the amount found and the limit; pass your own `Limits`
(say `Limits(max_duration_s=3600)`) to read bigger welds.

Time is the budget everything downstream scales with (the encoders size buffers by the
weld's duration), so every time-based reader refuses data that covers more than
`max_duration_s`, measured from what was decoded (audio samples read, video frames counted,
CSV rows), and `Weld.duration` never exceeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 ** 2
GiB = 1024 ** 3


@dataclass(frozen=True)
class Limits:
    """Bounds on what one read may take; every reader is given one."""

    # containers: zips, folders, one weld's files
    max_total_bytes: int = 2 * GiB      # uncompressed bytes of a zip, all welds together
    max_weld_bytes: int = 512 * MiB     # bytes of the files one weld uses (read before decoding)
    max_entries: int = 10_000           # entries in a zip
    max_ratio: float = 100.0            # uncompressed/compressed for a zip entry > 1 MiB
    max_files: int = 200_000            # files scanned under a folder
    max_depth: int = 8                  # folder levels scanned
    # time: seconds any time-based modality (audio, video, sensor log) may cover (10× a long weld)
    max_duration_s: float = 600.0
    # audio
    max_audio_samples: int = 64_000_000  # samples decoded from one audio file (frames × channels)
    max_audio_channels: int = 32
    # video
    max_video_frames: int = 100_000     # frames (packets) in the video stream
    # sensor CSV
    max_rows: int = 100_000             # data rows
    max_csv_columns: int = 1_000        # header fields
    max_csv_line: int = 65_536          # characters in one line
    max_csv_bytes: int = 32 * MiB       # size of the file
    max_truth_bytes: int = 1 * MiB      # size of truth.json
    # photos
    max_images: int = 64                # photos a weld folder may hold (more: refused)
    max_photos_decoded: int = 16        # photos decoded, the first in natural name order; the rest skipped
    max_image_pixels: int = 60_000_000  # pixels of one photo, from its header, before decoding
    max_photo_pixels_total: int = 256_000_000  # pixels decoded for one weld's photos (after JPEG's
    #                                            reduced decoding of big photos), before decoding

    def file_bytes(self, kind: str | None) -> int:
        """The most bytes one file of this kind (`layout.kind_of`) may have."""
        if kind == "sensor":
            return min(self.max_csv_bytes, self.max_weld_bytes)
        if kind == "truth":
            return min(self.max_truth_bytes, self.max_weld_bytes)
        return self.max_weld_bytes


DEFAULT_LIMITS = Limits()


def seconds(x: float) -> str:
    """A duration for a message: "600 s", "1,800 s", "6.98 s"."""
    return f"{x:,.0f} s" if abs(x) >= 100 else f"{x:.3g} s"
