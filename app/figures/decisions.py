"""Decisions: confusion matrices (one checkpoint, and B − A) with the counts in the cells.

Rows are the true class, columns the predicted class, both labelled with the class names;
the cells carry `customdata` [truth, predicted] so a click (a selection event of the
invisible marker overlay) names the cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import layout, wrap_label as _wrap


def _matrix(cm: pd.DataFrame, z: np.ndarray, title: str | None, colorscale, zmid: float | None,
            value_label: str) -> go.Figure:
    rows, cols = [str(r) for r in cm.index], [str(c) for c in cm.columns]
    ylab, xlab = [_wrap(r) for r in rows], cols          # x: slanted names, no line breaks
    text = [[f"{int(v):+d}" if zmid is not None and v else (f"{int(v)}" if v else "") for v in row] for row in z]
    heat = go.Heatmap(z=z.astype(np.float32), x=xlab, y=ylab, text=text, texttemplate="%{text}", colorscale=colorscale,
                      zmid=zmid, showscale=False, xgap=1, ygap=1, hoverinfo="skip")
    fig = go.Figure(heat)
    ii, jj = np.meshgrid(np.arange(len(rows)), np.arange(len(cols)), indexing="ij")
    # The clickable layer: one transparent marker per cell (heatmaps emit no selection events).
    fig.add_trace(go.Scatter(x=[xlab[j] for j in jj.ravel()], y=[ylab[i] for i in ii.ravel()], mode="markers",
                             marker=dict(symbol="square", size=28, color="rgba(0,0,0,0)", line=dict(width=0)),
                             selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
                             customdata=[[rows[i], cols[j], z[i, j]] for i, j in zip(ii.ravel(), jj.ravel())],
                             hovertemplate=f"truth %{{customdata[0]}}<br>predicted %{{customdata[1]}}<br>"
                                           f"{value_label} %{{customdata[2]}}<extra></extra>", showlegend=False))
    fig.update_yaxes(title_text="true class", autorange="reversed", automargin=True, type="category")
    fig.update_xaxes(title_text="predicted class", automargin=True, tickangle=-40, type="category")
    n = max(len(rows), 1)
    return layout(fig, title, 140 + 46 * n, margin=dict(l=10, r=10, t=40 if title else 16, b=10),
                  clickmode="event+select", dragmode=False)


def confusion_figure(cm: pd.DataFrame, title: str | None = "Confusion matrix") -> go.Figure:
    """Counts, rows = true class, columns = predicted class (a `views.confusion_matrix`)."""
    return _matrix(cm, cm.to_numpy(dtype=np.float64), title, "Blues", None, "welds")


def confusion_difference_figure(cm_a: pd.DataFrame, cm_b: pd.DataFrame,
                                title: str | None = "B − A (welds)") -> go.Figure:
    """B − A per cell of two confusion matrices on the same classes; blue more, red fewer."""
    diff = cm_b.reindex(index=cm_a.index, columns=cm_a.columns, fill_value=0) - cm_a
    return _matrix(diff, diff.to_numpy(dtype=np.float64), title, "RdBu", 0.0, "B − A")


def cell_of(point: dict) -> tuple[str, str] | None:
    """(truth, predicted) of a selected/clicked point of a confusion figure, or None."""
    cd = point.get("customdata") if isinstance(point, dict) else None
    if isinstance(cd, (list, tuple)) and len(cd) >= 2:
        return str(cd[0]), str(cd[1])
    return None
