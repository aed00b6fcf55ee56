"""Compare page through streamlit.testing (AppTest)."""
from __future__ import annotations

import pytest

from test_app_support import charts, count_calls, errors, problems, started_app, weld_dirs, zip_weld


@pytest.fixture
def app(data):
    return started_app("compare")


def _frame(at, column):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_default_compares_demo_early_with_demo_best_on_all_sample_welds(app, data):
    assert app.title[0].value == "Compare two checkpoints"
    assert errors(app) == []
    assert app.selectbox(key="compare_a_ckpt").value == "demo-early.safetensors"
    assert app.selectbox(key="compare_b_ckpt").value == "demo-best.safetensors"
    n = len(weld_dirs(data))
    assert _metric(app, "Welds") == str(n)
    table = _frame(app, "Flag")
    cols = set(table.columns)
    assert len(table) == n and {"Weld", "Truth", "A predicts", "A right", "B predicts", "B right", "Flag",
                                      "Top modality A", "Top modality B", "Δφ image (B − A)"} <= cols
    assert not any(c.startswith(("top_", "rank_rho", "delta_")) for c in cols)
    assert set(table["Truth"]) - {"unknown"}
    assert _metric(app, "Accuracy A").endswith("%") and _metric(app, "Accuracy B").endswith("%")
    acc = _frame(app, "True class")
    assert {"True class", "Welds", "A", "B"} <= set(acc.columns) and acc["Welds"].sum() > 0
    # three confusion matrices + delta + contributions + JSD + (A, B, B−A) per modality with attention
    assert len(charts(app)) >= 3 + 3 + 3 * 2
    flagged = int(_metric(app, "Flagged"))
    assert flagged == int((table["Flag"] != "").sum()) < n


def test_filter_where_they_disagree_or_one_is_wrong(app):
    table = lambda: _frame(app, "Flag")  # noqa: E731
    n = len(table())
    app.radio(key="compare_filter").set_value("where they disagree").run()
    assert problems(app) == [] and (table()["Flag"] != "").all() and len(table()) == int(_metric(app, "Flagged"))
    app.radio(key="compare_filter").set_value("where A or B is wrong").run()
    shown = table()
    assert problems(app) == [] and ((shown["A right"] == False) | (shown["B right"] == False)).all()  # noqa: E712
    app.radio(key="compare_filter").set_value("all welds").run()
    assert len(table()) == n


def test_selectors_do_not_rerun_the_models(app, monkeypatch):
    from app import caches, services

    runs = count_calls(monkeypatch, services.core_welds, "explain_welds")
    specs = [c.proto.spec for c in charts(app)]
    sel = app.selectbox(key=next(s.key for s in app.selectbox if s.key.startswith("compare_weld_")))
    sel.set_value(1).run()
    assert problems(app) == []
    assert [c.proto.spec for c in charts(app)] != specs
    for key, value in (("compare_head", "mean"), ("compare_method", "value_norms"), ("compare_method", "relevance"),
                       ("compare_colorscale", "Inferno"), ("compare_contrib_method", "leave_one_out"),
                       ("compare_fig_pick", "delta")):
        app.selectbox(key=key).set_value(value).run()
        assert problems(app) == [], key
    app.toggle(key="compare_shared").set_value(True).run()
    assert problems(app) == []
    app.toggle(key="compare_robust").set_value(False).run()
    assert problems(app) == []
    assert runs == []
    caches.clear_all()             # the count would see a model run: with the cache emptied, A and B run
    app.run()
    assert problems(app) == [] and len(runs) >= 2


def test_fewer_welds_and_the_same_checkpoint_twice(app, data):
    ms = next(m for m in app.multiselect if m.key.startswith("compare_welds_"))
    keep = [w.name for w in weld_dirs(data)[:2]]
    ms.set_value(keep).run()
    assert problems(app) == [] and _metric(app, "Welds") == "2"
    app.selectbox(key="compare_a_ckpt").set_value("demo-best.safetensors").run()
    assert problems(app) == []
    assert _metric(app, "Top modality differs") == "0"
    assert _metric(app, "Flagged") == "0" and _metric(app, "Accuracy A") == _metric(app, "Accuracy B")
    assert _metric(app, "Mean JSD (bits)") == "0.000"


def test_a_bad_checkpoint_for_a_keeps_the_last_comparison(app):
    before = _metric(app, "Welds")
    app.selectbox(key="compare_a_ckpt").set_value("Upload a checkpoint…").run()
    app.file_uploader(key="compare_a_ckpt_upload").upload("half.pt", b"PK\x03\x04truncated").run()
    assert problems(app) == []
    assert any(e.startswith("half.pt:") for e in errors(app))
    assert _metric(app, "Welds") == before and len(charts(app)) >= 9


def test_a_zip_of_welds(app, data):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for folder in weld_dirs(data)[:2]:
            with zipfile.ZipFile(io.BytesIO(zip_weld(folder))) as one:
                for name in one.namelist():
                    z.writestr(name, one.read(name))
    app.radio(key="compare_set_source").set_value("Upload a zip").run()
    app.file_uploader(key="compare_set_zip").upload("two.zip", buf.getvalue()).run()
    assert problems(app) == [] and errors(app) == []
    assert _metric(app, "Welds") == "2"
