"""The dashboard with a checkpoint that carries upstream's own encoders (issue 10): a raw weld is
read as those encoders need it, nothing heavy runs before the user has seen what it costs,
the run reports its progress per encoder and can be cancelled, the page says which encoders
ran and at what cost, and a second look comes from the on-disk feature cache.

Tiny configurations of the real backbones (tests/test_upstream_encoders.py builds them), in
upstream's key layout inside a training dict, uploaded as a user would."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from test_app_support import charts, errors, new_app, problems, weld_dirs  # noqa: E402
from test_upstream_encoders import build_upstream  # noqa: E402

GO = "explore_enc_go"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    return build_upstream(tmp_path_factory.mktemp("upstream_app"))


@pytest.fixture
def app(upstream, data, tmp_path, monkeypatch):
    from app import caches

    path, bdir, _ = upstream
    monkeypatch.setenv("WELD_DASHBOARD_BACKBONE_DIR", str(bdir))
    monkeypatch.setenv("FUSION_CORE_FEATURE_CACHE", str(tmp_path / "features"))
    caches.clear_all()
    at = new_app().run()
    at.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    at.file_uploader(key="explore_ckpt_upload").upload("best_model.pth", path.read_bytes()).run()
    yield at
    caches.clear_all()


def _buttons(at) -> dict:
    return {b.key: b for b in at.button}


def test_nothing_runs_before_the_cost_is_shown_then_progress_and_cost(app, monkeypatch):
    from fusion_core.models.encoders.upstream import encoders as up

    runs = []
    real = up.UpstreamEncoders.compute_one

    def counted(self, m, weld):
        runs.append(m)
        return real(self, m, weld)
    monkeypatch.setattr(up.UpstreamEncoders, "compute_one", counted)
    assert problems(app) == [] and errors(app) == []
    warning = " ".join(w.value for w in app.warning)
    assert "upstream's own encoders" in warning and "minutes per weld" in warning
    assert GO in _buttons(app) and runs == []
    assert not app.title                               # no explanation drawn yet
    _buttons(app)[GO].click().run()
    assert problems(app) == [] and errors(app) == []
    assert sorted(runs) == sorted(set(runs)) and set(runs) == {"video", "image", "audio", "sensor"}
    assert app.title[0].value.startswith("Weld ")
    note = " ".join(c.value for c in app.caption if "Upstream's encoders for this weld" in c.value)
    for m in ("video", "image", "audio", "sensor"):
        assert f"{m} (" in note
    assert "ran," in note and " s " in note
    assert {"explore_bars", "explore_hm_video", "explore_hm_sensor"} <= {c.key for c in charts(app)}
    # upstream's reader fed its video encoder the weld's photos: the raw views show those, and say so
    app.session_state["explore_tab"] = "On the raw weld"
    app.run()
    assert problems(app) == [] and errors(app) == []
    video = [c for c in charts(app) if c.key == "explore_video"]
    assert video and "video input = the weld's photos" in video[0].proto.spec


def test_video_tokens_index_the_photos_when_upstream_read_photos(data):
    import numpy as np
    import pandas as pd

    from app import services
    from app.screens.explore_raw import video_source

    weld = services.weld_from_folder(weld_dirs(data)[1])
    frames, times, note = video_source(weld, pd.DataFrame({"frame0": [0], "frame1": [1], "input": ["photos"]}))
    assert note and times is None and len(frames) == len(weld.images)
    np.testing.assert_array_equal(frames[2], weld.images[2])
    frames, times, note = video_source(weld, pd.DataFrame({"frame0": [0], "frame1": [1], "input": ["video"]}))
    assert note is None and frames is weld.video and times is weld.video_times


def test_a_second_look_reads_the_feature_cache_and_asks_nothing(app, monkeypatch):
    from app import caches
    from fusion_core.models.encoders.upstream import encoders as up

    _buttons(app)[GO].click().run()
    assert app.title
    caches.EXPLANATIONS.clear()                        # only the on-disk features are left
    runs = []
    monkeypatch.setattr(up.UpstreamEncoders, "compute_one", lambda *a: runs.append(a) or None)
    if "explore_encoders_cost" in app.session_state:
        del app.session_state["explore_encoders_cost"]
    app.run()
    assert problems(app) == [] and errors(app) == [] and runs == []
    assert GO not in _buttons(app)
    assert any("feature cache" in c.value for c in app.caption)


def test_the_weld_is_read_at_the_resolution_upstreams_encoders_take(app, data):
    from app import services
    from app.widgets import WeldInput
    from fusion_core.io.containers import load_weld

    folder = weld_dirs(data)[1]
    small = services.weld_from_folder(folder)
    wi = WeldInput("weld", small.weld_id, small.digest, weld=small,
                   extra={"reread": lambda opts: services.weld_from_folder(folder, **opts)})
    ck = services.checkpoint_from_path(data / "checkpoints" / "demo-best.safetensors")
    assert services.weld_for(ck, wi).weld is small                  # built-in encoders: as it is
    full = load_weld(folder, max_frames=32, max_side=8192, image_max_side=8192)
    got = services.weld_for(_upstream_ck(app), wi).weld
    assert got.digest == small.digest
    assert [im.shape for im in got.images] == [im.shape for im in full.images]
    assert [(im.shape[1], im.shape[0]) for im in got.images] == got.image_sizes      # the files' own pixels
    assert len(got.video) == len(full.video) == 32 and len(small.video) == 48     # upstream's 32 frames


def _upstream_ck(at):
    from app import services

    ck = at.session_state["explore_ckpt_good"]
    assert ck is not None and services.upstream_encoders(ck) is not None
    return ck
