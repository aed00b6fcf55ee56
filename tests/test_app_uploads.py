"""Failed uploads say so in the main area, above the result that is kept (AppTest)."""
from __future__ import annotations

from test_app_support import errors, problems, started_app


def _main_errors(at):
    return [e.value for e in at.main.error]


def _sidebar_errors(at):
    return [e.value for e in at.sidebar.error]


def test_a_txt_weld_file_is_named_in_the_main_area_and_the_weld_stays(data):
    app = started_app()
    title = app.title[0].value
    app.radio(key="explore_weld_source").set_value("Upload weld files").run()
    app.file_uploader(key="explore_files").upload("notes.txt", b"hello").run()
    assert problems(app) == []
    (main,) = _main_errors(app)
    assert main.startswith("notes.txt:") and ".txt file cannot be read here" in main and ".avi" in main
    assert "\n" not in main                                          # one line, like every error
    assert any("last input that worked" in c.value for c in app.main.caption)
    assert any(e.startswith("notes.txt:") for e in _sidebar_errors(app))
    assert app.title[0].value == title                 # the previous weld is still shown, below the error
    app.radio(key="explore_weld_source").set_value("Sample weld").run()
    assert errors(app) == []                           # the message goes with the next good input


def test_a_bad_checkpoint_in_compare_is_named_in_the_main_area(data):
    app = started_app("compare")
    app.selectbox(key="compare_a_ckpt").set_value("Upload a checkpoint…").run()
    app.file_uploader(key="compare_a_ckpt_upload").upload("notes.txt", b"text").run()
    assert problems(app) == []
    assert any(e.startswith("notes.txt:") and ".safetensors" in e for e in _main_errors(app))
    app.file_uploader(key="compare_a_ckpt_upload").upload("half.pt", b"PK\x03\x04truncated").run()
    assert any(e.startswith("half.pt:") for e in _main_errors(app))
    assert len(app.dataframe) >= 2                     # the last comparison stays


def test_a_bad_zip_in_dataset_is_named_in_the_main_area(data):
    app = started_app("dataset")
    before = len(app.dataframe)
    app.radio(key="dataset_set_source").set_value("Upload a zip").run()
    app.file_uploader(key="dataset_set_zip").upload("welds.zip", b"not a zip").run()
    assert problems(app) == []
    assert any(e.startswith("welds.zip:") for e in _main_errors(app))
    assert len(app.dataframe) == before
