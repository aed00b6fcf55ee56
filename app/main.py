"""The dashboard: `streamlit run app/main.py` (from the repository root, `make run`).

Pages (st.navigation, one file each): Explore (default), Compare, Dataset.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` without `-m` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

import app.preload  # noqa: E402,F401  (one thread imports what the pages need: see app/preload.py)

st.set_page_config(page_title="Weld fusion attention", layout="wide")
PAGES = [
    st.Page("pages/explore.py", title="Explore", default=True),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/dataset.py", title="Dataset"),
]
st.navigation(PAGES).run()
