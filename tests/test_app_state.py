"""Selections survive page switches, and the URL carries them (issue 12, "State and links")."""
from __future__ import annotations

from test_app_support import errors, new_app, open_page, problems, started_app, weld_dirs


def test_explore_selections_survive_a_visit_to_another_page(data):
    at = started_app()
    weld = weld_dirs(data)[4].name
    at.selectbox(key="explore_sample").set_value(weld).run()
    at.selectbox(key="explore_ckpt").set_value("demo-early.safetensors").run()
    at.selectbox(key="explore_head").set_value(2).run()
    at.selectbox(key="explore_method").set_value("value_norms").run()
    at.selectbox(key="explore_baseline").set_value("zeros").run()
    assert problems(at) == [] and errors(at) == []
    open_page(at, "dataset").run()
    assert problems(at) == [] and at.title[0].value == "Dataset"
    open_page(at, "").run()
    assert problems(at) == [] and errors(at) == []
    assert at.title[0].value == f"Weld {weld}"
    assert at.selectbox(key="explore_ckpt").value == "demo-early.safetensors"
    assert at.selectbox(key="explore_head").value == 2
    assert at.selectbox(key="explore_method").value == "value_norms"
    assert at.selectbox(key="explore_baseline").value == "zeros"


def test_the_url_carries_the_view_and_a_link_reopens_it(data):
    at = started_app()
    weld = weld_dirs(data)[3].name
    at.selectbox(key="explore_sample").set_value(weld).run()
    at.selectbox(key="explore_head").set_value(1).run()
    at.selectbox(key="explore_token").set_value(2).run()
    at.selectbox(key="explore_baseline").set_value("zeros").run()
    qp = dict(at.query_params)
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in qp.items()}
    assert flat["weld"] == weld and flat["head"] == "1" and flat["token"] == "2" and flat["baseline"] == "zeros"
    assert flat["checkpoint"] == "demo-best.safetensors"
    links = [c.value for c in at.sidebar.code]
    assert any(f"weld={weld}" in v and "head=1" in v for v in links), links
    # a new session opened on that link
    fresh = new_app()
    for k, v in flat.items():
        fresh.query_params[k] = v
    fresh.run()
    assert problems(fresh) == [] and errors(fresh) == []
    assert fresh.title[0].value == f"Weld {weld}"
    assert fresh.selectbox(key="explore_head").value == 1
    assert fresh.selectbox(key="explore_token").value == 2
    assert fresh.selectbox(key="explore_baseline").value == "zeros"


def test_a_url_with_unknown_values_is_ignored(data):
    at = new_app()
    at.query_params["head"] = "99"
    at.query_params["map"] = "nonsense"
    at.query_params["baseline"] = "<script>"
    at.run()
    assert problems(at) == [] and errors(at) == []
    assert at.selectbox(key="explore_head").value == "mean"


def test_dataset_keeps_an_opened_parquet_across_pages(data, tmp_path, monkeypatch):
    import os
    import tempfile

    from fusion_core.batch.engines import run_batch

    monkeypatch.setenv("WELD_DASHBOARD_DATA_ROOTS", os.pathsep.join([str(data), tempfile.gettempdir()]))
    out = tmp_path / "r.parquet"
    run_batch([data / "checkpoints" / "demo-best.safetensors"], weld_dirs(data)[0], out, workers=0)
    at = started_app("dataset")
    at.radio(key="dataset_source").set_value("Open batch results (.parquet)").run()
    at.text_input(key="dataset_parquet_path").set_value(str(out)).run()
    assert problems(at) == [] and errors(at) == []
    open_page(at, "").run()
    open_page(at, "dataset").run()
    assert problems(at) == [] and errors(at) == []
    assert at.radio(key="dataset_source").value == "Open batch results (.parquet)"
    assert at.text_input(key="dataset_parquet_path").value == str(out)
