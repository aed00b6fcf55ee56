"""Explore page through streamlit.testing (AppTest): default render, every selector, uploads,
heatmap-cell detail, and error paths that keep the previous valid state."""
from __future__ import annotations

import io
import json
import tempfile

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file as save_np

from test_app_support import charts, count_calls, errors, new_app, problems, started_app, weld_dirs, zip_weld


@pytest.fixture
def app(data):
    return started_app()


def _title(at) -> str:
    return at.title[0].value


TABS = ("Attention maps", "On the raw weld", "Faithfulness", "Report & export")


def _open_tab(at, tab: str):
    at.session_state["explore_tab"] = tab
    return at.run()


def _keys(at) -> set[str]:
    return {c.key for c in charts(at)}


def test_default_render_shows_a_defective_sample_weld_with_demo_best(app, data):
    from fusion_core.vocab import class_code_of

    first_defect = next(p.name for p in weld_dirs(data) if class_code_of(p.name))
    assert _title(app) == f"Weld {first_defect}"
    assert errors(app) == []
    assert app.selectbox(key="explore_ckpt").value == "demo-best.safetensors"
    assert any("Prediction" in m.value for m in app.markdown)
    assert any(e.label == "How to read this page" for e in app.expander)
    assert any("heads" in c.value and "sha256" in c.value for c in app.sidebar.caption)
    # the first answer and the open tab only: prediction, contributions, per-token, 4 heatmaps
    assert _keys(app) == {"explore_pred", "explore_bars", "explore_token_bars", "explore_hm_video",
                          "explore_hm_audio", "explore_hm_image", "explore_hm_sensor"}


def test_tabs_are_lazy_and_the_randomized_model_runs_only_for_faithfulness(app, monkeypatch):
    from app import services

    randomized = count_calls(monkeypatch, services, "randomized_checkpoint")
    _open_tab(app, "On the raw weld")
    assert problems(app) == []
    assert {"explore_sensor", "explore_audio", "explore_video"} <= _keys(app)
    assert not any(k.startswith("explore_hm_") for k in _keys(app))
    assert randomized == []
    _open_tab(app, "Faithfulness")
    assert problems(app) == [] and len(randomized) == 1
    assert {"explore_agreement", "explore_random", "explore_twin"} <= _keys(app)
    _open_tab(app, "Report & export")
    assert problems(app) == []
    assert not any(k.startswith(("explore_hm_", "explore_sensor")) for k in _keys(app))


def test_display_selectors_never_rerun_the_model(app, monkeypatch):
    from app import caches, services

    runs = count_calls(monkeypatch, services.core_welds, "explain_welds")
    specs = [c.proto.spec for c in charts(app)]
    app.selectbox(key="explore_head").set_value(1).run()
    assert problems(app) == []
    after_head = [c.proto.spec for c in charts(app)]
    assert after_head != specs
    for key, value in (("explore_method", "value_norms"), ("explore_method", "relevance"), ("explore_token", 0),
                       ("explore_colorscale", "Cividis"), ("explore_method", "attention")):
        app.selectbox(key=key).set_value(value).run()
        assert problems(app) == [], key
    for key in ("explore_shared", "explore_full", "explore_relevance_share", "explore_robust"):
        app.toggle(key=key).set_value(not app.toggle(key=key).value).run()
        assert problems(app) == [], key
    _open_tab(app, "On the raw weld")
    app.radio(key="explore_audio_view").set_value("spectrogram").run()
    zoom = [s for s in app.slider if s.key.startswith("explore_zoom_")][0]
    zoom.set_value((1.0, 3.0)).run()
    assert problems(app) == []
    _open_tab(app, "Faithfulness")
    app.selectbox(key="explore_random_modality").set_value("audio").run()
    assert problems(app) == []
    assert runs == []
    # the count would see a model run: with the explanations' cache emptied, the same page runs it
    caches.clear_all()
    app.run()
    assert problems(app) == [] and len(runs) >= 1


def test_an_old_map_name_in_the_session_still_works(data):
    at = new_app()
    at.session_state["explore_method"] = "value"           # the value-weighted map's name before value_norms
    at.run()
    assert problems(at) == []
    assert at.selectbox(key="explore_method").value == "value_norms"


def test_each_sample_weld_baseline_and_target(app, data):
    for folder in weld_dirs(data)[1:3]:
        app.selectbox(key="explore_sample").set_value(folder.name).run()
        assert problems(app) == [] and _title(app) == f"Weld {folder.name}"
    for baseline in ("reference-mean", "zeros"):
        app.selectbox(key="explore_baseline").set_value(baseline).run()
        assert problems(app) == [] and errors(app) == []
        assert any(baseline in c.value for c in app.caption)
        # which welds the reference set is, said where the reference is used
        said = [c.value for c in app.caption if c.value.startswith("Reference set")]
        good = [p.name for p in weld_dirs(data) if p.name.endswith("00")]
        assert (len(said) == 1 and all(g in said[0] for g in good[:8])) == (baseline == "reference-mean")
    targets = app.selectbox(key="explore_target").options
    classes = [t for t in targets if t.startswith("class:")]
    for target in [t for t in targets if t not in ("auto",) and not t.startswith("class:")] + classes[-1:]:
        app.selectbox(key="explore_target").set_value(target).run()
        assert problems(app) == [], target
        assert errors(app) == [], target


def test_a_sessions_first_look_draws_the_prediction_alone_then_the_whole_page(data):
    """Before the browser has painted: the title and the prediction of the weld the link names,
    and the listener that reruns the page once they are painted; no controls, bars or maps.
    The rerun draws the sidebar on that same weld, target and baseline, and the same prediction
    chart (so the browser keeps it), then everything else."""
    from app.screens.explore import FIRST_LOOK_WAIT

    weld = weld_dirs(data)[2].name
    at = new_app(painted=False)
    for k, v in {"weld": weld, "target": "cosine", "baseline": "zeros"}.items():
        at.query_params[k] = v
    at.run()
    assert problems(at) == [] and errors(at) == []
    assert [c.key for c in charts(at)] == ["explore_pred"]
    assert at.title[0].value == f"Weld {weld}"
    assert any(m.value.startswith("**Prediction:**") for m in at.markdown)
    assert len(at.sidebar.selectbox) == 0 and len(at.main.selectbox) == 0
    assert [e.key for e in at.main.get("bidi_component")] == ["explore_first_answer"]
    assert [c.value for c in at.main.caption] == [FIRST_LOOK_WAIT]
    first_pred = json.loads(charts(at)[0].proto.spec)
    at.session_state["explore_painted"] = True          # what the trigger's callback sets
    at.run()
    assert problems(at) == [] and errors(at) == []
    assert at.selectbox(key="explore_sample").value == weld
    assert at.selectbox(key="explore_ckpt").value == "demo-best.safetensors"
    assert at.selectbox(key="explore_target").value == "cosine"
    assert at.selectbox(key="explore_baseline").value == "zeros"
    assert at.title[0].value == f"Weld {weld}"
    keys = [c.key for c in charts(at)]
    assert keys[:3] == ["explore_pred", "explore_bars", "explore_token_bars"]
    assert {"explore_hm_sensor", "explore_hm_video"} <= set(keys)
    assert json.loads(charts(at)[0].proto.spec) == first_pred
    assert [e.key for e in at.main.get("bidi_component")] == ["explore_cell_clicks"]
    assert FIRST_LOOK_WAIT not in [c.value for c in at.main.caption]


def test_a_first_run_that_cannot_start_on_a_sample_weld_defers_only_the_rest(data):
    """A weld handed over from another page before Explore was ever painted: the first run
    draws the sidebar, the prediction and the contributions, and the listener that reruns the
    rest (per-token bars, maps) once painted."""
    weld = weld_dirs(data)[3]
    at = new_app(painted=False)
    at.session_state["explore_request"] = {"weld_path": str(weld), "weld": None, "ckpt_name": None, "ckpt": None}
    at.run()
    assert problems(at) == []
    assert at.title[0].value == f"Weld {weld.name}"
    assert at.selectbox(key="explore_sample").value == weld.name
    assert _keys(at) == {"explore_pred", "explore_bars"}
    assert [e.key for e in at.main.get("bidi_component")] == ["explore_first_paint"]
    waiting = "Drawing the attention maps…"
    assert any(c.value == waiting for c in at.caption)
    at.session_state["explore_painted"] = True
    at.run()
    assert {"explore_token_bars", "explore_hm_sensor", "explore_hm_video"} <= _keys(at)
    assert not any(c.value == waiting for c in at.caption)


def test_heatmaps_are_clickable_and_a_clicked_cell_shows_its_samples(app):
    """Every heatmap names its modality for the click listener (mounted once, in the open tab);
    the click itself is the browser test's. A selected sensor cell lists its samples."""
    specs = [json.loads(c.proto.spec) for c in charts(app) if c.key.startswith("explore_hm_")]
    assert sorted(s["layout"]["meta"]["weld_cells"] for s in specs) == ["audio", "image", "sensor", "video"]
    assert all(len(s["data"]) == 1 and s["data"][0]["type"] == "heatmap" for s in specs)     # no overlay
    listeners = [e for e in app.main.get("bidi_component") if e.key == "explore_cell_clicks"]
    assert len(listeners) == 1
    app.session_state["explore_cell"] = {"modality": "sensor", "token": 1, "s0": 6, "s1": 6}
    app.run()
    assert problems(app) == []
    assert any(md.value.startswith("#### Selected: sensor, token 1") for md in app.markdown)
    # the span it covers is shaded and named as such, not as the weld's planted defect
    (raw,) = [json.loads(c.proto.spec) for c in charts(app) if c.key == "explore_cell_raw"]
    assert {sh.get("name") for sh in raw["layout"]["shapes"]} == {"this cell's span"}
    # The samples logged in that step's time span, listed under its trace.
    (rows,) = [t.value for t in app.table]
    times = [float(c.split()[2]) for c in rows.columns]                 # "t = 0.81 s"
    assert 0 < len(times) <= 12 and all(0.75 <= t < 0.87 for t in times)
    assert "Primary Weld Current" in rows.index


def test_clicked_cell_shows_that_moment_or_region(app):
    n = len(charts(app))
    for m, tok, s in (("sensor", 1, 10), ("audio", 0, 3), ("video", 2, 13), ("image", 3, 7)):
        app.session_state["explore_cell"] = {"modality": m, "token": tok, "s0": s, "s1": s}
        app.run()
        assert problems(app) == []
        heads = [md.value for md in app.markdown if md.value.startswith("#### Selected")]
        assert heads and f"{m}, token {tok}" in heads[0] and f"position {s}" in heads[0]
        if m in ("sensor", "audio", "video"):
            assert " s" in heads[0] and "t " in heads[0]
        if m == "image":
            assert "photo" in heads[0] and "patch" in heads[0]
        assert len(charts(app)) >= n + 2                          # per-head bars + the raw view
    # a stale cell (out of range) is ignored
    app.session_state["explore_cell"] = {"modality": "sensor", "token": 0, "s0": 10**6, "s1": 10**6}
    app.run()
    assert problems(app) == [] and not [md for md in app.markdown if md.value.startswith("#### Selected")]


def test_upload_a_zipped_weld(app, data):
    folder = weld_dirs(data)[-1]
    app.radio(key="explore_weld_source").set_value("Upload a zip").run()
    app.file_uploader(key="explore_zip").upload(f"{folder.name}.zip", zip_weld(folder), "application/zip")
    app.run()
    assert problems(app) == [] and errors(app) == []
    assert _title(app) == f"Weld {folder.name}"


def test_upload_single_weld_files(app, data):
    folder = weld_dirs(data)[1]
    app.radio(key="explore_weld_source").set_value("Upload weld files").run()
    up = app.file_uploader(key="explore_files")
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            up.upload(p.name, p.read_bytes())
    app.run()
    assert problems(app) == [] and errors(app) == []
    assert _title(app) == f"Weld {folder.name}"
    assert len(charts(app)) >= 7
    _open_tab(app, "On the raw weld")
    assert {"explore_sensor", "explore_audio", "explore_video"} <= _keys(app)


def test_upload_a_feature_file_and_a_mismatched_one(app, data):
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.io.features import save_features
    from fusion_core.explain.welds import encode_welds
    from fusion_core.io.containers import load_weld

    ck = load_checkpoint(data / "checkpoints" / "demo-best.safetensors")
    fb = encode_welds(ck, [load_weld(weld_dirs(data)[0]), load_weld(weld_dirs(data)[1])])
    with tempfile.TemporaryDirectory() as tmp:
        save_features(f"{tmp}/f.npz", fb)
        feats = open(f"{tmp}/f.npz", "rb").read()
    app.radio(key="explore_weld_source").set_value("Upload a feature file").run()
    app.file_uploader(key="explore_features").upload("two_welds.npz", feats).run()
    assert problems(app) == [] and errors(app) == []
    assert _title(app) == f"Weld {fb.ids[0]}"
    _open_tab(app, "On the raw weld")
    assert any("feature file" in c.value for c in app.caption)          # no raw weld behind features
    _open_tab(app, "Attention maps")
    app.selectbox(key="explore_feature_row").set_value(1).run()
    assert _title(app) == f"Weld {fb.ids[1]}"
    good_title = _title(app)
    # wrong feature dimension for this checkpoint: an error naming the file, previous state kept
    bad = io.BytesIO()
    np.savez(bad, video=np.zeros((5, 7), np.float32))
    app.file_uploader(key="explore_features").set_value(("wrong_dims.npz", bad.getvalue(), "application/octet-stream"))
    app.run()
    assert problems(app) == []
    msgs = errors(app)
    assert msgs and "wrong_dims.npz" in msgs[0] and "dimension 7" in msgs[0]
    assert _title(app) == good_title


def test_upload_a_checkpoint_and_one_that_does_not_say_its_heads(app, data):
    raw = (data / "checkpoints" / "demo-early.safetensors").read_bytes()
    app.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    app.file_uploader(key="explore_ckpt_upload").upload("my-model.safetensors", raw).run()
    assert problems(app) == [] and errors(app) == []
    assert any("my-model.safetensors" in c.value for c in app.caption)
    # the same weights without the config that names the head count
    with safe_open(str(data / "checkpoints" / "demo-early.safetensors"), "np") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "fusion_config"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with tempfile.TemporaryDirectory() as d:
        save_np(tensors, f"{d}/x.safetensors", metadata=meta)
        noheads = open(f"{d}/x.safetensors", "rb").read()
    app.file_uploader(key="explore_ckpt_upload").set_value(("noheads.safetensors", noheads, "application/octet-stream"))
    app.run()
    assert problems(app) == [] and errors(app) == []
    heads = app.number_input(key="explore_heads")
    assert heads.value == 8
    assert any("8 heads (assumed)" in c.value.lower() for c in app.sidebar.caption)
    real = json.loads(f_meta_fusion(data))["num_heads"]
    heads.set_value(real).run()
    assert problems(app) == [] and errors(app) == []
    assert any(f"{real} heads (caller)" in c.value for c in app.sidebar.caption)
    # a head count the hidden size does not divide: error, previous model kept
    heads.set_value(7).run()
    assert problems(app) == []
    assert errors(app) and "noheads.safetensors" in errors(app)[0] and "divisible" in errors(app)[0]
    assert any(f"{real} heads" in c.value for c in app.sidebar.caption)


def f_meta_fusion(data) -> str:
    with safe_open(str(data / "checkpoints" / "demo-early.safetensors"), "np") as f:
        return f.metadata()["fusion_config"]


def test_bad_uploads_show_an_error_naming_the_file_and_keep_the_page(app):
    good = _title(app)
    n = len(charts(app))
    app.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    app.file_uploader(key="explore_ckpt_upload").upload("broken.safetensors", b"\x00not a checkpoint" * 10).run()
    assert problems(app) == []
    assert any("broken.safetensors" in e for e in errors(app))
    assert _title(app) == good and len(charts(app)) == n
    app.file_uploader(key="explore_ckpt_upload").set_value(("weights.pt", b"garbage", "application/octet-stream"))
    app.run()
    assert problems(app) == [] and any(e.startswith("weights.pt:") for e in errors(app))
    assert _title(app) == good
    # a zip that is not one
    app.selectbox(key="explore_ckpt").set_value("demo-best.safetensors").run()
    app.radio(key="explore_weld_source").set_value("Upload a zip").run()
    app.file_uploader(key="explore_zip").upload("junk.zip", b"PK but not really").run()
    assert problems(app) == []
    assert any(e.startswith("junk.zip:") for e in errors(app))
    assert _title(app) == good
    # a sensor log that is not one
    app.radio(key="explore_weld_source").set_value("Upload weld files").run()
    app.file_uploader(key="explore_files").upload("000999.csv", b"hello\x00world").run()
    assert problems(app) == [] and any(e.startswith("000999.csv:") for e in errors(app))
    assert _title(app) == good


def test_query_params_choose_weld_and_checkpoint(data):
    target = weld_dirs(data)[2].name
    at = new_app()
    at.query_params["weld"] = target
    at.query_params["checkpoint"] = "demo-early"
    at.run()
    assert problems(at) == []
    assert _title(at) == f"Weld {target}"
    assert at.selectbox(key="explore_ckpt").value == "demo-early.safetensors"


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_a_mean_pool_checkpoint_with_a_feature_file_shows_contributions_only(app):
    import torch

    from fusion_core.models.dummy import DummyCrossAttentionFusion

    dims = {"video": 5, "image": 4, "audio": 3, "sensor": 6}
    torch.manual_seed(0)
    m = DummyCrossAttentionFusion(sum(dims.values()), 8)
    ckpt = io.BytesIO()
    torch.save({"epoch": 3, "model_state_dict": {f"fusion.{k}": v for k, v in m.state_dict().items()},
                "config": {f"{k}_dim": v for k, v in dims.items()}}, ckpt)
    rng = np.random.default_rng(0)
    feats = _npz(**{k: rng.normal(size=(7, d)).astype(np.float32) for k, d in dims.items()})

    app.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    app.file_uploader(key="explore_ckpt_upload").upload("meanpool.pt", ckpt.getvalue()).run()
    # this model has no encoders: the sample weld cannot be read, the page says so and keeps the last view
    assert problems(app) == []
    assert any("meanpool.pt" in e and "encoders" in e for e in errors(app))
    app.radio(key="explore_weld_source").set_value("Upload a feature file").run()
    app.file_uploader(key="explore_features").upload("pooled.npz", feats).run()
    assert problems(app) == [] and errors(app) == []
    assert any("no attention" in i.value for i in app.info)
    assert len(charts(app)) >= 1                      # contributions
    _open_tab(app, "Faithfulness")
    assert problems(app) == [] and {"explore_agreement", "explore_random"} <= _keys(app)
