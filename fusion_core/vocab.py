"""The words of the domain, each defined once: modalities, weld classes, the sensor log's
columns and units, sample rates. Pure data, no torch, no numpy: anything may import it.
"""

from __future__ import annotations

from typing import Any

MODALITIES: tuple[str, ...] = ("video", "image", "audio", "sensor")
# Modalities whose tokens are spans of time (photos are taken after the weld).
TIME_MODALITIES: tuple[str, ...] = ("video", "audio", "sensor")

# Class code = last two digits of the part number (Intel Robotic Welding dataset).
CLASS_NAMES: dict[int, str] = {
    0: "good",
    1: "excessive penetration",
    2: "burnthrough",
    3: "porosity",
    4: "porosity with excessive penetration",
    5: "undercut",
    6: "overlap",
    7: "lack of fusion",
    8: "excessive convexity",
    9: "spatter",
    10: "warping",
    11: "crater cracks",
}

CSV_COLUMNS: tuple[str, ...] = (
    "Date", "Time", "Part No", "Pressure", "CO2 Weld Flow", "Feed",
    "Primary Weld Current", "Wire Consumed", "Secondary Weld Voltage", "Remarks",
)
# The six numeric channels sit between "Part No" and "Remarks".
SENSOR_CHANNELS: tuple[str, ...] = CSV_COLUMNS[3:9]
SENSOR_UNITS: dict[str, str] = {
    "Pressure": "bar", "CO2 Weld Flow": "L/min", "Feed": "mm/min",
    "Primary Weld Current": "A", "Wire Consumed": "mm", "Secondary Weld Voltage": "V",
}
SENSOR_RATE_HZ = 8.6
AUDIO_RATE_HZ = 16_000


def class_code_of(weld_id: str) -> int | None:
    """The class code a part number carries in its last two digits, or None."""
    tail = weld_id[-2:]
    if len(weld_id) >= 2 and tail.isdigit() and int(tail) in CLASS_NAMES:
        return int(tail)
    return None


def weld_class(weld_id: str, truth: dict[str, Any] | None = None) -> int | None:
    """The ground-truth class code of a weld: truth.json's `class` first, else the part number."""
    if truth and isinstance(truth.get("class"), (int, str)) and str(truth["class"]).isdigit():
        return int(truth["class"])
    return class_code_of(weld_id)

