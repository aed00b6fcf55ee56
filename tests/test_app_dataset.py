"""Dataset page through streamlit.testing (AppTest)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from test_app_support import REPO, charts, data_root, errors, problems, started_app, weld_dirs, zip_weld

BATCH = "Open batch results (.parquet)"


@pytest.fixture
def app(data, monkeypatch):
    # the batch tests type paths under the system's temporary folder: a data root here
    monkeypatch.setenv("WELD_DASHBOARD_DATA_ROOTS", os.pathsep.join([str(REPO), tempfile.gettempdir()]))
    return started_app("dataset")


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
    assert len(charts(app)) == 3      # confusion matrix, contributions by class, relevance in window vs chance


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


def _weld_rows(at):
    (df,) = [d.value for d in at.dataframe if "weld" in d.value.columns]
    return df


def test_confusion_matrix_per_class_accuracy_and_misclassified_filter(app, data):
    app.selectbox(key="dataset_ckpt").set_value("demo-early.safetensors").run()
    table = _table(app)
    known = table[table["class"] != "unknown"]
    cm = next(c for c in charts(app) if "true class" in c.proto.spec)
    assert "predicted class" in cm.proto.spec and known["class"].iloc[0] in cm.proto.spec
    (acc,) = [d.value for d in app.dataframe if "Accuracy" in d.value.columns]
    assert acc["Welds"].sum() == len(known) and acc["Correct"].sum() == int(known["correct"].sum())
    app.radio(key="dataset_show").set_value("misclassified only").run()
    assert problems(app) == []
    wrong = _weld_rows(app)
    assert list(wrong["weld"]) == list(table.loc[table["correct"].eq(False), "weld"])


def test_a_matrix_cell_click_lists_its_welds_and_opens_one(app, data):
    table = _table(app)
    row = table[table["class"] != "unknown"].iloc[-1]
    cell = [row["class"], row["prediction"], 1]
    app.session_state["dataset_cm"] = {"selection": {"points": [{"customdata": cell}], "point_indices": [0],
                                                     "box": [], "lasso": []}}
    app.run()
    assert problems(app) == [] and app.radio(key="dataset_show").value == "one matrix cell"
    shown = _weld_rows(app)
    assert row["weld"] in list(shown["weld"])
    assert set(shown["class"]) == {row["class"]} and set(shown["prediction"]) == {row["prediction"]}
    key = next(d.key for d in app.dataframe if "weld" in d.value.columns)
    pos = list(shown["weld"]).index(row["weld"])
    app.session_state[key] = {"selection": {"rows": [pos], "columns": [], "cells": []}}
    app.run()
    app.button(key="dataset_open").click().run()
    assert problems(app) == [] and app.title[0].value == f"Weld {row['weld']}"


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


# --------------------------------------------------------------------------- batch results (.parquet)

def _weld_set(root, dest, n):
    dest.mkdir()
    for folder in weld_dirs(root)[:n]:
        shutil.copytree(folder, dest / folder.name)
    return dest


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A small batch run (3 sample welds + one unreadable weld), made once for this module."""
    from fusion_core.batch.engines import run_batch

    root = data_root()
    tmp = tmp_path_factory.mktemp("batch")
    welds = _weld_set(root, tmp / "welds", 3)
    (welds / "bad9").mkdir()
    (welds / "bad9" / "bad9.csv").write_bytes(b"not,a\nsensor\x00file")
    out = tmp / "results.parquet"
    s = run_batch([root / "checkpoints" / "demo-best.safetensors"], welds, out, workers=0)
    assert s.errors == 1 and s.total_rows == 4
    return out, [p.name for p in weld_dirs(root)[:3]]


def _open_batch(app, path):
    app.radio(key="dataset_source").set_value(BATCH).run()
    app.text_input(key="dataset_parquet_path").set_value(str(path)).run()
    assert problems(app) == [] and errors(app) == []
    return app


def _failed(at):
    (df,) = [d.value for d in at.dataframe if "error" in d.value.columns]
    return df


def test_batch_results_open_as_table_class_plot_and_error_list(app, results):
    path, ids = results
    _open_batch(app, path)
    table = _table(app)
    assert list(table["weld"]) == ids
    for col in ("class", "prediction", "correct", "p(prediction)", "φ video", "φ image", "φ audio", "φ sensor",
                "top", "in window: sensor", "window share", "missing", "source"):
        assert col in table.columns
    assert table["φ sensor"].notna().all()
    share = table["in window: sensor"].dropna()
    assert len(share) and ((share >= 0) & (share <= 1)).all()
    figs = charts(app)
    assert len(figs) == 3 and "true class" in figs[0].proto.spec      # the confusion matrix first
    figs = figs[1:]
    import json
    boxes = [t for t in json.loads(figs[0].proto.spec)["data"] if t["type"] == "box"]
    assert {t["name"] for t in boxes} == {"video", "image", "audio", "sensor"}
    # one point per weld and present modality (the sample welds have all four), x = its class
    assert sum(len(t["x"]) for t in boxes) == 4 * len(ids)
    assert set(boxes[0]["x"]) == set(table["class"])
    for m in ("leave_one_out", "attention", "relevance", "shapley"):
        app.selectbox(key="dataset_method").set_value(m).run()
        assert problems(app) == []
    failed = _failed(app)
    assert list(failed["weld"]) == ["bad9"]
    assert "bad9/bad9.csv" in failed["error"].iloc[0] and "not a CSV" in failed["error"].iloc[0]


def test_a_bad_parquet_upload_names_the_file_and_keeps_the_table(app, results):
    path, ids = results
    _open_batch(app, path)
    app.file_uploader(key="dataset_parquet_upload").upload("broken.parquet", b"this is not parquet").run()
    assert problems(app) == []
    assert any(e.startswith("broken.parquet:") for e in errors(app))
    assert list(_table(app)["weld"]) == ids


def test_an_uploaded_parquet_opens(app, results):
    path, ids = results
    app.radio(key="dataset_source").set_value(BATCH).run()
    app.file_uploader(key="dataset_parquet_upload").upload("mine.parquet", path.read_bytes()).run()
    assert problems(app) == [] and errors(app) == []
    assert list(_table(app)["weld"]) == ids and list(_failed(app)["weld"]) == ["bad9"]


def test_a_missing_parquet_shows_an_error(app):
    app.radio(key="dataset_source").set_value(BATCH).run()
    app.text_input(key="dataset_parquet_path").set_value("/no/such/results.parquet").run()
    assert problems(app) == []
    assert any("/no/such/results.parquet" in e for e in errors(app))


def test_a_batch_row_opens_in_explore(app, results, data):
    path, ids = results
    _open_batch(app, path)
    app.session_state["dataset_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    app.run()
    app.button(key="dataset_open").click().run()
    assert problems(app) == []
    assert app.title[0].value == f"Weld {ids[1]}"
    assert app.selectbox(key="explore_ckpt").value == "demo-best.safetensors"


def test_run_batch_into_parquet_from_the_page(app, data, tmp_path):
    welds = _weld_set(data, tmp_path / "welds", 2)
    out = tmp_path / "run.parquet"
    app.radio(key="dataset_source").set_value(BATCH).run()
    app.text_input(key="dataset_batch_samples").set_value(str(welds))
    app.text_input(key="dataset_batch_out").set_value(str(out))
    app.number_input(key="dataset_batch_workers").set_value(0)
    app.button(key="dataset_run_batch").click().run()
    assert problems(app) == [] and errors(app) == []
    assert out.is_file()
    assert app.text_input(key="dataset_parquet_path").value == str(out)
    assert list(_table(app)["weld"]) == [p.name for p in weld_dirs(welds)]
    assert any("2 welds" in s.value for s in app.success)
