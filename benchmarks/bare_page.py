"""The reference page for render timings: a bare Streamlit page with one Plotly chart."""
import plotly.graph_objects as go
import streamlit as st

st.plotly_chart(go.Figure(go.Scatter(y=[0, 1, 3, 2, 4, 3, 5], mode="lines+markers")))
