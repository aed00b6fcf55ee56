"""The dashboard's pages, one function each (`explore_page`, `compare_page`, `dataset_page`),
with `page()` giving its `st.Page` for the router (app/main.py) and for st.switch_page.
(Not named `pages/`: see app/main.py.)"""
