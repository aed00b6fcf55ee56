"""Selections that survive page switches, and links that reopen the same view.

Streamlit forgets a widget's value when a run does not draw that widget (another page is
open), so each page lists the widget keys it keeps (`KEPT`): `restore` puts a kept value
back before the page draws its widgets, `remember` copies the values after. The URL carries
the same selections (`URL`: query parameter → widget key), read when the widget has no value
yet (a link opened in a new tab) and written back after each run, so the address bar is
always a link to the current view; `copy_link` shows it with a copy button.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

KEEP = "_keep_"

# Widget keys each page keeps across page switches.
KEPT = {
    "explore": ("explore_ckpt", "explore_weld_source", "explore_sample", "explore_head", "explore_method",
                "explore_token", "explore_baseline", "explore_target", "explore_colorscale", "explore_tab"),
    "compare": ("compare_a_ckpt", "compare_b_ckpt", "compare_set_source", "compare_folder", "compare_target",
                "compare_baseline", "compare_head", "compare_method", "compare_colorscale"),
    "dataset": ("dataset_source", "dataset_ckpt", "dataset_set_source", "dataset_folder", "dataset_target",
                "dataset_baseline", "dataset_parquet_path", "dataset_method"),
}

# Query parameter → widget key, per page.
URL = {
    "explore": {"checkpoint": "explore_ckpt", "weld": "explore_sample", "head": "explore_head",
                "map": "explore_method", "token": "explore_token", "baseline": "explore_baseline",
                "target": "explore_target", "view": "explore_tab"},
    "compare": {"a": "compare_a_ckpt", "b": "compare_b_ckpt", "target": "compare_target",
                "baseline": "compare_baseline", "head": "compare_head", "map": "compare_method"},
    "dataset": {"parquet": "dataset_parquet_path", "checkpoint": "dataset_ckpt", "target": "dataset_target",
                "baseline": "dataset_baseline"},
}


def restore(page: str) -> None:
    """Before the page's widgets: kept values back into widget state (where none is set)."""
    for key in KEPT.get(page, ()):
        if key not in st.session_state and KEEP + key in st.session_state:
            st.session_state[key] = st.session_state[KEEP + key]


def remember(page: str) -> None:
    """After the page's widgets: their values, kept for the next time the page opens."""
    for key in KEPT.get(page, ()):
        if key in st.session_state:
            st.session_state[KEEP + key] = st.session_state[key]


def _parse(text: str):
    """"mean" stays; "3" → 3 (head and token indices); anything else as it is."""
    return int(text) if text.isdigit() else text


def url_choice(param: str, options: Sequence, parse: Callable = _parse):
    """The URL's value of `param` if it is one of `options`, else None."""
    try:
        value = parse(st.query_params[param]) if param in st.query_params else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and value in list(options) else None


def from_url(key: str, param: str, options: Sequence, parse: Callable = _parse) -> None:
    """Before drawing the widget `key`: when it has no value yet and the URL names one of
    its `options`, start it there (an unknown value is ignored)."""
    if key not in st.session_state:
        value = url_choice(param, options, parse)
        if value is not None:
            st.session_state[key] = value


def link_params(page: str) -> dict[str, str]:
    """The query parameters of the current view (those with a value)."""
    out = {}
    for param, key in URL.get(page, {}).items():
        v = st.session_state.get(key)
        if v is None or str(v) == "" or not _applies(page, param):
            continue
        out[param] = str(v)
    return out


def _applies(page: str, param: str) -> bool:
    """A weld id means something only for a sample weld; a results file only in batch mode."""
    if param == "weld":
        return st.session_state.get(f"{page}_weld_source", "Sample weld") == "Sample weld"
    if param == "parquet":
        return str(st.session_state.get(f"{page}_source", "")).startswith("Open batch")
    if page == "dataset" and param in ("checkpoint", "target", "baseline"):
        return not str(st.session_state.get(f"{page}_source", "")).startswith("Open batch")
    return True


def write_url(page: str) -> None:
    """Make the address bar a link to this view (only the parameters that changed)."""
    want = link_params(page)
    changed: dict[str, str] = {}
    for param, key in URL.get(page, {}).items():
        if key not in st.session_state:         # its widget is not drawn yet (a fragment, a later run)
            continue
        if param in want and st.query_params.get(param) != want[param]:
            changed[param] = want[param]
        elif param not in want and param in st.query_params:
            del st.query_params[param]
    if changed:                                 # one message to the browser, not one per parameter
        st.query_params.update(changed)


def link(page: str) -> str:
    """The address of this view: the page's own URL with its query string."""
    from urllib.parse import urlencode, urlsplit, urlunsplit

    try:
        base = st.context.url or ""
    except Exception:       # noqa: BLE001 - no browser (AppTest)
        base = ""
    parts = urlsplit(base)
    query = urlencode(link_params(page))
    if parts.netloc:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return f"/{page}" + (f"?{query}" if query else "")


def copy_link(page: str, where=None) -> None:
    """A "Link to this view" box with Streamlit's copy button."""
    where = where or st
    # A popover, not an expander: its content mounts only when opened, so the code block's
    # syntax highlighter (1.5 MB of JavaScript, ~0.2 s of main thread) is not paid per page load.
    with where.popover("Link to this view", icon=":material/link:", width="stretch"):
        st.caption("Copy it (button at the right of the box): it reopens this page with the same checkpoint, "
                   "weld and display choices.")
        st.code(link(page), language=None, wrap_lines=True)
