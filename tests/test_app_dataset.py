"""Dataset page through streamlit.testing (AppTest)."""
from __future__ import annotations

import pytest

from test_app_support import charts, errors, new_app, problems, use_data, weld_dirs, zip_weld


@pytest.fixture
def data(monkeypatch):
    return use_data(monkeypatch)


@pytest.fixture
def app(data):
    at = new_app().run()
    at.switch_page("pages/dataset.py").run()
    assert problems(at) == []
    return at


def _table(at):
    (df,) = [d for d in at.dataframe if d.key == "dataset_table"]
    return df.value


def test_default_runs_demo_best_over_the_sample_welds(app, data):
    assert app.title[0].value == "Dataset" and errors(app) == []
    table = _table(app)
    assert list(table["weld"]) == [p.name for p in weld_dirs(data)]
    for col in ("class", "prediction", "φ video", "φ sensor", "top", "in window: sensor", "window share"):
        assert col in table.columns
    # welds with planted defect windows get a relevance-in-window share in [0, 1]
    with_windows = table["window share"].notna()
    assert with_windows.any()
    share = table.loc[with_windows, "in window: sensor"].dropna()
    assert ((share >= 0) & (share <= 1)).all()
    assert len(charts(app)) == 1


def test_method_and_baseline_selectors(app):
    for m in ("leave_one_out", "attention", "relevance", "shapley"):
        app.selectbox(key="dataset_method").set_value(m).run()
        assert problems(app) == []
    app.selectbox(key="dataset_baseline").set_value("zeros").run()
    assert problems(app) == [] and errors(app) == []


def test_a_missing_folder_shows_an_error_and_keeps_the_table(app):
    n = len(_table(app))
    app.text_input(key="dataset_folder").set_value("/no/such/welds").run()
    assert problems(app) == []
    assert any(e.startswith("/no/such/welds:") for e in errors(app))
    assert len(_table(app)) == n


def test_a_zip_of_welds(app, data):
    folder = weld_dirs(data)[0]
    app.radio(key="dataset_set_source").set_value("Upload a zip").run()
    app.file_uploader(key="dataset_set_zip").upload("one.zip", zip_weld(folder)).run()
    assert problems(app) == [] and errors(app) == []
    assert list(_table(app)["weld"]) == [folder.name]


def test_choosing_a_row_opens_it_in_explore(app, data):
    target = weld_dirs(data)[2].name
    app.session_state["dataset_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    app.run()
    app.button(key="dataset_open").click().run()
    assert problems(app) == []
    assert app.title[0].value == f"Weld {target}"
    assert app.selectbox(key="explore_ckpt").value == "demo-best.safetensors"


def test_a_zipped_weld_opens_in_explore_with_an_uploaded_checkpoint(app, data):
    folder = weld_dirs(data)[1]
    app.selectbox(key="dataset_ckpt").set_value("Upload a checkpoint…").run()
    raw = (data / "checkpoints" / "demo-early.safetensors").read_bytes()
    app.file_uploader(key="dataset_ckpt_upload").upload("mine.safetensors", raw).run()
    app.radio(key="dataset_set_source").set_value("Upload a zip").run()
    app.file_uploader(key="dataset_set_zip").upload("one.zip", zip_weld(folder)).run()
    assert problems(app) == [] and errors(app) == []
    app.session_state["dataset_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    app.run()
    app.button(key="dataset_open").click().run()
    assert problems(app) == [] and errors(app) == []
    assert app.title[0].value == f"Weld {folder.name}"
    assert "mine.safetensors" in app.selectbox(key="explore_ckpt").value
