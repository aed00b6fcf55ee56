"""The dashboard: `streamlit run app/main.py` (from the repository root, `make run`).

The router: one `st.Page` per page function (app/screens/), Explore the default at /, then
Compare (/compare) and Dataset (/dataset). `fusion_core` and `app` are installed into the
environment (`pip install -e .`), so nothing here touches sys.path.

The page functions live in app/screens/, not app/pages/: a folder named `pages` next to
the main script turns on Streamlit's older multipage mode, which (until the first
st.navigation call of the server, and in every AppTest run) executes pages/<name>.py as
the page itself, a module that only defines functions: a blank page.
"""

import streamlit as st

from app import widgets
from app.screens import compare, dataset, explore


def main() -> None:
    st.set_page_config(page_title="Weld fusion attention", layout="wide")
    widgets.clear_problems()
    st.navigation([explore.page(), compare.page(), dataset.page()]).run()


if __name__ == "__main__":      # Streamlit runs this file as __main__
    main()
