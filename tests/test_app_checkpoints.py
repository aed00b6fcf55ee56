"""Checkpoint facts in the dashboard (issue 9): an assumed head count is never silent — a
warning beside the head-count input, per-head views labelled "assumed head count" — and the
facts say which output the cosine/anomaly targets explain."""
from __future__ import annotations

import json
import os

import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from test_app_support import errors, new_app, open_page, problems, use_data, weld_dirs


@pytest.fixture
def no_heads_data(tmp_path, monkeypatch):
    """A data folder with demo-best as it is and a copy whose metadata has no head count."""
    real = use_data(pytest.MonkeyPatch())
    d = tmp_path / "data"
    (d / "checkpoints").mkdir(parents=True)
    for w in weld_dirs(real)[:3]:
        os.symlink(w, d / w.name)
    src = real / "checkpoints" / "demo-best.safetensors"
    os.symlink(src, d / "checkpoints" / "demo-best.safetensors")
    with safe_open(str(src), "np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    cfg = json.loads(meta["fusion_config"])
    cfg.pop("num_heads")
    meta["fusion_config"] = json.dumps(cfg)
    save_file(tensors, str(d / "checkpoints" / "no-heads.safetensors"), metadata=meta)
    monkeypatch.setenv("WELD_DASHBOARD_DATA", str(d))
    monkeypatch.setenv("WELD_DASHBOARD_DATA_ROOTS", os.pathsep.join([str(d), str(real)]))
    return d


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def test_an_assumed_head_count_is_shown_beside_the_input_and_on_per_head_views(no_heads_data):
    at = new_app().run()
    assert problems(at) == [] and errors(at) == []
    assert not any("Head count assumed" in w for w in _warnings(at))
    assert any("4 heads (checkpoint" in c.value for c in at.sidebar.caption)
    at.selectbox(key="explore_ckpt").set_value("no-heads.safetensors").run()
    assert problems(at) == [] and errors(at) == []
    warn = [w for w in at.sidebar.warning if "Head count assumed" in w.value]
    assert warn and "no-heads.json" in warn[0].value and "num_heads" in warn[0].value
    assert at.number_input(key="explore_heads").value == 8
    assert any("8 heads (ASSUMED)" in c.value for c in at.sidebar.caption)
    head = at.selectbox(key="explore_head")
    assert "assumed head count" in head.label
    head.set_value(1).run()
    assert problems(at) == []
    # a rerun does not turn the input's own default into a "given" count
    at.run()
    assert any("Head count assumed" in w.value for w in at.sidebar.warning)
    # the user gives the count: no longer assumed
    at.number_input(key="explore_heads").set_value(4).run()
    assert problems(at) == [] and errors(at) == []
    assert not any("Head count assumed" in w for w in _warnings(at))
    assert any("4 heads (caller" in c.value for c in at.sidebar.caption)
    assert "assumed" not in at.selectbox(key="explore_head").label


def test_compare_labels_per_head_views_when_either_count_is_assumed(no_heads_data):
    at = new_app().run()
    open_page(at, "compare").run()
    at.selectbox(key="compare_a_ckpt").set_value("no-heads.safetensors").run()
    assert problems(at) == []
    assert any("Head count assumed" in w.value for w in at.sidebar.warning)
    assert "assumed head count" in at.selectbox(key="compare_head").label


def test_the_facts_say_which_output_is_explained(data):
    at = new_app().run()
    cap = [c.value for c in at.sidebar.caption if "sha256" in c.value]
    assert cap and "output: fused" in cap[0]
