"""The Streamlit dashboard on top of fusion_core (layer 6: it may import anything there).

    main.py      the router (st.navigation over the page functions)
    services.py  Streamlit caches around fusion_core calls; where the data lives
    widgets.py   input widgets (checkpoint, weld, target, map kind) and page hand-over
    figures/     Plotly figure builders (no Streamlit)
    screens/     the pages explore, compare, dataset: one function each, sections as functions
"""
