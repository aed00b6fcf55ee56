"""Decision helpers (fusion_core.explain.views) and the confusion-matrix figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
from types import SimpleNamespace

from fusion_core.explain import views
from app import figures as figs

TRUTH = ["good", "good", "burnthrough", "porosity", None, "burnthrough"]
PRED = ["good", "burnthrough", "burnthrough", "good", "good", "unknown"]


def test_confusion_matrix_counts_known_pairs_in_class_order():
    cm = views.confusion_matrix(TRUTH, PRED)
    assert list(cm.index) == ["good", "burnthrough", "porosity"] == list(cm.columns)
    assert cm.loc["good", "good"] == 1 and cm.loc["good", "burnthrough"] == 1
    assert cm.loc["burnthrough", "burnthrough"] == 1 and cm.loc["porosity", "good"] == 1
    assert int(cm.to_numpy().sum()) == 4          # the unknown truth and the unknown prediction are left out


def test_per_class_accuracy_and_accuracy():
    acc = views.per_class_accuracy(TRUTH, PRED).set_index("class")
    assert acc.loc["good", "welds"] == 2 and acc.loc["good", "accuracy"] == 0.5
    assert acc.loc["burnthrough", "accuracy"] == 1.0 and acc.loc["porosity", "accuracy"] == 0.0
    assert views.accuracy(TRUTH, PRED) == 0.5
    assert np.isnan(views.accuracy([None], ["good"]))
    fixed = views.per_class_accuracy(TRUTH, PRED, ["good", "spatter"]).set_index("class")
    assert np.isnan(fixed.loc["spatter", "accuracy"]) and fixed.loc["spatter", "welds"] == 0


def test_welds_in_cell():
    t = pd.DataFrame({"weld": list("abcdef"), "class": [x or "unknown" for x in TRUTH], "prediction": PRED})
    assert list(views.welds_in_cell(t, "good", "burnthrough")["weld"]) == ["b"]


def _exp(preds, phis):
    classes = ["good", "burnthrough"]
    logits = np.array([[1.0, 0.0] if p == "good" else [0.0, 1.0] for p in preds])
    phis = np.asarray(phis, dtype=float)
    return SimpleNamespace(ids=[f"w{i}" for i in range(len(preds))], contributions={"shapley": phis},
                           predicted=lambda i: classes[int(logits[i].argmax())],
                           top_modality=lambda i: views.MODALITIES[int(np.argmax(phis[i]))])


def _cmp(a, b):
    n = len(a.ids)
    return SimpleNamespace(a=a, b=b, rank_agreement={"shapley": np.ones(n)}, js=np.zeros((n, 1, 4)))


def test_decision_table_flags_say_why_and_need_a_margin():
    a = _exp(["good", "good", "good", "good"],
             [[1, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.45, 0, 0], [1, 0, 0, 0]])
    b = _exp(["burnthrough", "good", "good", "good"],
             [[1, 0, 0, 0], [0, 1, 0, 0], [0.45, 0.5, 0, 0], [1, 0, 0, 0]])
    t = views.decision_table(_cmp(a, b), ["good", "good", None, "burnthrough"])
    assert list(t["Flag"]) == ["prediction", "top modality", "", ""]      # weld 2: top differs by < 10 %
    assert list(t["A right"]) == [True, True, None, False] and list(t["B right"]) == [False, True, None, False]
    assert {"Weld", "Truth", "A predicts", "B predicts", "Top modality A", "Δφ image (B − A)"} <= set(t.columns)
    assert not any(c.startswith(("top_", "rank_rho")) for c in t.columns)
    assert list(views.filter_decisions(t, "where they disagree")["Weld"]) == ["w0", "w1"]
    assert list(views.filter_decisions(t, "where A or B is wrong")["Weld"]) == ["w0", "w3"]
    assert len(views.filter_decisions(t, "all welds")) == 4
    same = views.decision_table(_cmp(a, a), ["good"] * 4)
    assert (same["Flag"] == "").all()


def test_confusion_figures_label_axes_with_class_names():
    cm_a = views.confusion_matrix(TRUTH, PRED)
    cm_b = views.confusion_matrix(TRUTH, TRUTH, list(cm_a.index))
    fig = figs.confusion_figure(cm_a)
    heat = fig.data[0]
    assert list(heat.y) == ["good", "burnthrough", "porosity"] and fig.layout.yaxis.title.text == "true class"
    assert fig.layout.xaxis.title.text == "predicted class"
    diff = figs.confusion_difference_figure(cm_a, cm_b)
    z = np.asarray(diff.data[0].z)
    assert z[0, 0] == 1 and z[0, 1] == -1 and diff.data[0].zmid == 0
    assert figs.cell_of({"customdata": ["good", "burnthrough"]}) == ("good", "burnthrough")
    assert figs.cell_of({}) is None
    long = figs.confusion_figure(views.confusion_matrix(["porosity with excessive penetration"], ["good"]))
    assert "<br>" in long.data[0].y[-1]
