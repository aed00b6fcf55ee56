"""What the Explore page's sections share: its session-state key prefix, the sample index, and
the display controls' choices (`MapView`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app import figures as figs

K = "explore"
CELL = f"{K}_cell"
B = 0                       # the page explains one weld: sample 0 of the explanation


@dataclass
class MapView:
    """The display controls' choices and the maps they give (one (T, S) array per modality)."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "attention"
    head: str | int = "mean"
    token: str | int = "mean"
    cscale: str = "Viridis"
    shared: bool = False
    robust: bool = False
    full_res: bool = False
    assumed: bool = False                 # the checkpoint's head count is a guess

    @property
    def value_label(self) -> str:
        return figs.MAP_VALUE_LABELS[self.kind]

    def weights(self, m: str) -> np.ndarray | None:
        """Per position of modality m: the chosen token's map row (or the mean of tokens)."""
        if m not in self.maps:
            return None
        z = self.maps[m]
        return z.mean(0) if self.token == "mean" else z[int(self.token)]
