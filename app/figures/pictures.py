"""The raw weld as pictures: the photos and the video (one frame per time bin) with patch
attention laid over them, and the frames of one token's span. Pictures travel as JPEG
data URIs."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .common import empty_figure, f32, layout


def jpeg_data_uri(img: np.ndarray, quality: int = 85) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def overlay_colorscale(colorscale="Viridis", max_alpha: float = 0.75, steps: int = 6) -> list:
    """The colour scale with opacity rising from 0, so low attention leaves the picture visible."""
    cols = sample_colorscale(colorscale, list(np.linspace(0, 1, steps)), colortype="rgb")
    out = []
    for i, c in enumerate(cols):
        r, g, b = (int(float(v)) for v in c[c.index("(") + 1:-1].split(","))
        out.append([i / (steps - 1), f"rgba({r},{g},{b},{max_alpha * i / (steps - 1):.3f})"])
    return out


def _overlay_range(w: np.ndarray, zmax: float | None) -> tuple[float, float]:
    """From the smallest weight (fully transparent) to the largest: near-uniform attention
    leaves the picture visible and only what stands out is coloured."""
    if not w.size or not np.isfinite(w).any():
        return 0.0, 1.0
    lo, hi = float(np.nanmin(w)), float(np.nanmax(w)) if zmax is None else float(zmax)
    return lo, (hi if hi > lo else lo + 1e-12)


def _grid(rows: pd.DataFrame, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patch boxes forming a grid → (x edges, y edges, z (gy, gx)); NaN where no patch."""
    xs = np.unique(rows["x0"].to_numpy(dtype=np.float64))
    ys = np.unique(rows["y0"].to_numpy(dtype=np.float64))
    xe = np.r_[xs, rows["x1"].max()]
    ye = np.r_[ys, rows["y1"].max()]
    z = np.full((len(ys), len(xs)), np.nan)
    ix = np.searchsorted(xs, rows["x0"].to_numpy(dtype=np.float64))
    iy = np.searchsorted(ys, rows["y0"].to_numpy(dtype=np.float64))
    z[iy, ix] = w
    return xe, ye, z


def _montage(tiles: list[np.ndarray], ncols: int, gap: int = 4) -> tuple[np.ndarray, list[tuple[int, int]]]:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    nrows = int(math.ceil(len(tiles) / ncols))
    canvas = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    offsets = []
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = r * (h + gap), c * (w + gap)
        canvas[y:y + t.shape[0], x:x + t.shape[1]] = t[..., :3]
        offsets.append((x, y))
    return canvas, offsets


def _picture_height(width: int, height: int, px_width: int, title: str | None) -> int:
    """Figure height that shows a width×height picture `px_width` pixels wide."""
    return int((36 if title else 6) + 12 + px_width * height / max(width, 1))


def _picture_layout(fig: go.Figure, width: int, height: int, title: str | None, px_height: int) -> go.Figure:
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain")
    return layout(fig, title, px_height, margin=dict(l=6, r=6, t=36 if title else 6, b=6))


def _strip_groups(frames: np.ndarray, positions: pd.DataFrame, t_range: tuple[float, float] | None,
                  frame_times: np.ndarray | None, cursor: float | None) -> tuple[list, list, int | None]:
    """Per time bin overlapping `t_range`: (first position, end, rows, frame shown); its tile is
    the bin's middle frame, except in the bin holding the frame nearest the cursor, which
    shows that frame. Returns (tiles, groups, index of the cursor's group or None)."""
    key = positions["t0"].to_numpy()
    bins = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    bounds = np.r_[bins, len(positions)]
    near = None
    if cursor is not None and frame_times is not None and len(frame_times):
        near = int(np.argmin(np.abs(np.asarray(frame_times, dtype=np.float64) - float(cursor))))
    tiles, groups, at = [], [], None
    for a, z in zip(bounds[:-1], bounds[1:]):
        rows = positions.iloc[a:z]
        f0, f1 = int(rows["frame0"].iloc[0]), int(rows["frame1"].iloc[0])
        t0, t1 = float(rows["t0"].iloc[0]), float(rows["t1"].iloc[0])
        if f0 < 0 or len(frames) == 0 or (t_range is not None and (t1 <= t_range[0] or t0 >= t_range[1])):
            continue
        fi = min(len(frames) - 1, max(0, (f0 + f1) // 2))
        if near is not None and f0 <= near <= f1 and at is None:
            fi, at = near, len(groups)
        tiles.append(frames[fi])
        groups.append((a, z, rows, fi))
    return tiles, groups, at


def video_strip_figure(frames: np.ndarray, weights: np.ndarray, positions: pd.DataFrame, *,
                       colorscale="Viridis", zmax: float | None = None, ncols: int = 8,
                       value_label: str = "attention", title: str | None = None,
                       highlight: tuple[int, int] | None = None, px_width: int = 1000,
                       t_range: tuple[float, float] | None = None, frame_times: np.ndarray | None = None,
                       cursor: float | None = None) -> go.Figure:
    """One frame per time bin with the bin's patch attention laid over it (transparent at 0).

    `highlight` = (first, last) position outlines those patches. `t_range` keeps the bins
    that overlap it; `cursor` (seconds, with `frame_times`) shows the frame nearest it in its
    bin's tile, outlined and labelled."""
    w = np.asarray(weights, dtype=np.float64)
    tiles, groups, at = _strip_groups(frames, positions, t_range, frame_times, cursor)
    if not tiles:
        return empty_figure("no video frames" + (" in this time window" if t_range is not None else ""))
    ncols = min(ncols, len(tiles))
    canvas, offsets = _montage(tiles, ncols)
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas), hoverinfo="skip"))
    zmin, zmax = _overlay_range(w, zmax)
    scale = overlay_colorscale(colorscale)
    for i, ((a, z, rows, fi), (ox, oy)) in enumerate(zip(groups, offsets)):
        xe, ye, grid = _grid(rows, w[a:z])
        t0, t1 = rows["t0"].iloc[0], rows["t1"].iloc[0]
        fig.add_trace(go.Heatmap(z=f32(grid), x=f32(xe + ox), y=f32(ye + oy), zmin=zmin, zmax=zmax, colorscale=scale,
                                 showscale=i == 0, colorbar=dict(title=dict(text=value_label), thickness=10),
                                 hovertemplate=f"t {t0:.2f}–{t1:.2f} s<br>{value_label} %{{z:.4g}}<extra></extra>"))
        label = f"{t0:.1f}s" if i != at else f"▶ {float(frame_times[fi]):.2f}s"
        fig.add_annotation(x=ox + 2, y=oy + 2, text=label, showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)" if i != at else "#111")
        if highlight is not None:
            for s in range(max(a, highlight[0]), min(z, highlight[1] + 1)):
                r = positions.iloc[s]
                fig.add_shape(type="rect", x0=r["x0"] + ox, x1=r["x1"] + ox, y0=r["y0"] + oy, y1=r["y1"] + oy,
                              line=dict(color="#E4572E", width=2))
    if at is not None:
        h, w_ = tiles[at].shape[:2]
        ox, oy = offsets[at]
        fig.add_shape(type="rect", x0=ox, x1=ox + w_, y0=oy, y1=oy + h, name="cursor",
                      line=dict(color="white", width=3))
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width - 90, title))


def _photo_scale(images: Sequence[np.ndarray], image_sizes: Sequence[tuple[int, int]], j: int) -> tuple[float, float]:
    """Decoded pixels per file pixel of photo j (boxes are given in the file's pixels)."""
    h, w_ = images[j].shape[:2]
    if j < len(image_sizes) and image_sizes[j]:
        return w_ / image_sizes[j][0], h / image_sizes[j][1]
    return 1.0, 1.0


def _photo_box(fig: go.Figure, box: Mapping, j: int, offsets, scale: tuple[float, float], **shape) -> None:
    (sx, sy), (ox, oy) = scale, offsets[j]
    fig.add_shape(type="rect", x0=box["x0"] * sx + ox, x1=box["x1"] * sx + ox, y0=box["y0"] * sy + oy,
                  y1=box["y1"] * sy + oy, **shape)


def _photo_overlays(fig: go.Figure, images, image_sizes, offsets, weights, positions: pd.DataFrame, zrange,
                    colorscale, value_label: str, showscale: bool = True) -> None:
    w = np.asarray(weights, dtype=np.float64)
    zmin, zmax = zrange
    scale = overlay_colorscale(colorscale)
    img_idx = positions["image"].to_numpy()
    for j, (ox, oy) in enumerate(offsets):
        sel = np.flatnonzero(img_idx == j)
        if not len(sel):
            continue
        sx, sy = _photo_scale(images, image_sizes, j)
        xe, ye, grid = _grid(positions.iloc[sel], w[sel])
        fig.add_trace(go.Heatmap(z=f32(grid), x=f32(xe * sx + ox), y=f32(ye * sy + oy), zmin=zmin, zmax=zmax,
                                 colorscale=scale, showscale=showscale and j == 0,
                                 colorbar=dict(title=dict(text=value_label), thickness=10),
                                 hovertemplate=f"photo {j + 1}<br>{value_label} %{{z:.4g}}<extra></extra>"))


def photos_figure(images: Sequence[np.ndarray], weights: np.ndarray | None, positions: pd.DataFrame | None, *,
                  image_sizes: Sequence[tuple[int, int]] = (), regions: Sequence[Mapping] = (),
                  colorscale="Viridis", zmax: float | None = None, ncols: int = 3, value_label: str = "attention",
                  title: str | None = None, highlight: tuple[int, int] | None = None,
                  labels: Sequence[str] | None = None, px_width: int = 1000,
                  zrange: tuple[float, float] | None = None, outline: int | None = None,
                  showscale: bool = True) -> go.Figure:
    """The post-weld photos with patch attention over them; truth regions dashed. Boxes are in
    the file's pixels (`image_sizes`) and are scaled to the decoded pictures. `zrange`: the
    overlay's colour range (default: that of `weights`); `outline`: a photo to frame."""
    if not images:
        return empty_figure("no photos")
    ncols = min(ncols, len(images))
    canvas, offsets = _montage(list(images), ncols)
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas), hoverinfo="skip"))
    has_pos = positions is not None and "image" in positions.columns
    if weights is not None and has_pos:
        zr = zrange or _overlay_range(np.asarray(weights, dtype=np.float64), zmax)
        _photo_overlays(fig, images, image_sizes, offsets, weights, positions, zr, colorscale, value_label, showscale)
    if highlight is not None and has_pos:
        for s in range(highlight[0], min(len(positions), highlight[1] + 1)):
            j = int(positions["image"].iloc[s])
            if j < len(offsets):
                _photo_box(fig, positions.iloc[s], j, offsets, _photo_scale(images, image_sizes, j),
                           line=dict(color="#E4572E", width=3))
    for reg in regions or ():
        j = int(reg.get("image", -1))
        if 0 <= j < len(offsets):
            _photo_box(fig, reg, j, offsets, _photo_scale(images, image_sizes, j), name="truth region",
                       line=dict(color="white", width=2, dash="dash"))
    if outline is not None and 0 <= outline < len(offsets):
        ox, oy = offsets[outline]
        h, w_ = images[outline].shape[:2]
        fig.add_shape(type="rect", x0=ox, x1=ox + w_, y0=oy, y1=oy + h, name="shown", line=dict(color="#111", width=3))
    for j, (ox, oy) in enumerate(offsets):
        fig.add_annotation(x=ox + 3, y=oy + 3, text=labels[j] if labels else f"photo {j + 1}", showarrow=False,
                           xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)")
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width - 90, title))


def photo_figure(images: Sequence[np.ndarray], j: int, weights: np.ndarray | None, positions: pd.DataFrame | None,
                 *, image_sizes: Sequence[tuple[int, int]] = (), regions: Sequence[Mapping] = (),
                 colorscale="Viridis", value_label: str = "attention", title: str | None = None,
                 px_width: int = 1000, max_height: int = 640) -> go.Figure:
    """Photo `j` alone, as large as `px_width` allows (aspect kept, at most `max_height` px
    tall), with its patches' attention and its truth regions (dashed, scaled from the file's
    pixels). The colour range is that of all photos' patches, so stepping from photo to photo
    keeps one scale."""
    if not images or not 0 <= j < len(images):
        return empty_figure("no photo")
    rows = None
    w = None
    zrange = None
    if weights is not None and positions is not None and "image" in positions.columns:
        all_w = np.asarray(weights, dtype=np.float64)
        zrange = _overlay_range(all_w, None)
        sel = positions["image"].to_numpy() == j
        rows = positions[sel].assign(image=0).reset_index(drop=True)
        w = all_w[sel]
    regs = [dict(r, image=0) for r in regions or () if int(r.get("image", -1)) == j]
    size = [image_sizes[j]] if j < len(image_sizes) else []
    h, wd = images[j].shape[:2]
    px = min(px_width, int((max_height - 100) * wd / max(h, 1)))
    fig = photos_figure([images[j]], w, rows, image_sizes=size, regions=regs, colorscale=colorscale,
                        value_label=value_label, title=title, labels=[f"photo {j + 1} of {len(images)}"],
                        zrange=zrange)
    # The colour bar goes under the photo, so the photo takes the container's whole width.
    fig.update_traces(selector=dict(type="heatmap"),
                      colorbar=dict(orientation="h", x=1.0, xanchor="right", y=0.01, yanchor="bottom", yref="container",
                                    len=0.4, thickness=10, title=dict(text=value_label, side="top")))
    top = 36 if title else 6
    return fig.update_layout(height=int(top + 12 + (px - 12) * h / max(wd, 1)) + 40,
                             margin=dict(l=6, r=6, t=top, b=46))


def frames_figure(frames: np.ndarray, frame_times: np.ndarray | None, first: int, last: int,
                  boxes: Sequence[Mapping] = (), max_frames: int = 4, title: str | None = None,
                  px_width: int = 700) -> go.Figure:
    """Frames first..last (evenly picked, at most max_frames) with patch boxes outlined."""
    first, last = max(0, first), min(len(frames) - 1, last)
    if last < first:
        return empty_figure("no frames in this span")
    pick = np.unique(np.linspace(first, last, min(max_frames, last - first + 1)).round().astype(int))
    canvas, offsets = _montage([frames[i] for i in pick], len(pick))
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas, 90), hoverinfo="skip"))
    for i, (ox, oy) in zip(pick, offsets):
        for b in boxes:
            fig.add_shape(type="rect", x0=b["x0"] + ox, x1=b["x1"] + ox, y0=b["y0"] + oy, y1=b["y1"] + oy,
                          line=dict(color="#E4572E", width=2))
        label = f"frame {i}" + (f" · {frame_times[i]:.2f}s" if frame_times is not None and i < len(frame_times) else "")
        fig.add_annotation(x=ox + 2, y=oy + 2, text=label, showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)")
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width, title))
