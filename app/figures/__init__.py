"""Figure builders: arrays and DataFrames in, `plotly.graph_objects.Figure` out.

Pure functions (no Streamlit), so tests call them without a server. The numbers they draw
are prepared by `fusion_core.explain.views` (downsampling, time bands, spectrograms, colour
ranges). Everything sent to the browser is bounded: heatmaps keep at most
`HEATMAP_MAX_COLS` columns, signals at most `SIGNAL_MAX_POINTS` time bins (a min/max
envelope, so peaks survive), numbers go out as float32 (Plotly 7 ships numpy arrays as
base64), spectrogram levels as uint8 and pictures as JPEG data URIs. Full resolution is
asked for by passing `max_cols=None` / `max_points=None` or a narrow `t_range` (zoom).

    common          look, CHART keywords, payload_bytes, figure_html, method labels
    maps            token × position heatmaps (clickable), B − A, JSD, randomized twin, per head
    signals         sensor and audio over time with the attention band, procedure limits, a
                    reference weld and the time cursor (`add_time_cursor`, in maps, also
                    marks the time-based heatmaps)
    pictures        photos (one large, or all) and video frames with patch attention over them
    decisions       confusion matrices (one checkpoint, B − A), clickable cells
    contributions   bars, prediction, agreement, randomization, A vs B, by class, windows
"""

from .common import (CHART, COLORSCALES, MODALITY_COLORS, PLOT_CONFIG, empty_figure, figure_html, method_label,
                     payload_bytes)
from .contributions import (agreement_figure, contribution_bars, contributions_ab_figure,
                            contributions_by_class_figure, delta_figure, prediction_figure, randomization_figure,
                            token_contribution_figure, window_share_figure)
from .decisions import cell_of, confusion_difference_figure, confusion_figure
from .maps import (CELL_FIELDS, CLICKABLE, HEATMAP_MAX_COLS, MAP_VALUE_LABELS, add_time_cursor, attention_heatmap,
                   cell_from_click, column_info, difference_heatmap, head_values_figure, hover_template, js_heatmap,
                   time_columns, twin_heatmaps)
from .pictures import (frames_figure, jpeg_data_uri, overlay_colorscale, photo_figure, photos_figure,
                       video_strip_figure)
from .signals import SIGNAL_MAX_POINTS, audio_figure, channel_label, limit_status, sensor_figure

__all__ = [
    "CELL_FIELDS", "CHART", "CLICKABLE", "COLORSCALES", "HEATMAP_MAX_COLS", "MAP_VALUE_LABELS", "MODALITY_COLORS", "PLOT_CONFIG",
    "SIGNAL_MAX_POINTS", "add_time_cursor", "agreement_figure", "attention_heatmap", "audio_figure",
    "cell_from_click", "cell_of", "channel_label", "column_info", "confusion_difference_figure", "confusion_figure",
    "contribution_bars", "contributions_ab_figure", "contributions_by_class_figure", "delta_figure",
    "difference_heatmap", "empty_figure", "figure_html", "frames_figure", "head_values_figure", "hover_template",
    "jpeg_data_uri", "js_heatmap", "limit_status", "method_label", "overlay_colorscale", "payload_bytes",
    "photo_figure", "photos_figure", "prediction_figure", "randomization_figure", "sensor_figure", "time_columns",
    "token_contribution_figure", "twin_heatmaps", "video_strip_figure", "window_share_figure",
]
