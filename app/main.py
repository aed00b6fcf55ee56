"""Placeholder entry point: one page with one Plotly chart, so the browser-test harness
has something to load. The real pages (Explore, Compare, Dataset) replace it."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st


def placeholder_page() -> None:
    st.title("Weld fusion attention")
    st.caption("Placeholder: the dashboard pages are not built yet.")
    z = np.random.default_rng(0).random((4, 32))
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis"))
    fig.update_layout(xaxis_title="position", yaxis_title="fusion token", height=300)
    st.plotly_chart(fig)


st.set_page_config(page_title="Weld fusion attention", layout="wide")
st.navigation([st.Page(placeholder_page, title="Explore", default=True)]).run()
