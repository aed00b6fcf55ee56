"""Many users at once: one `streamlit run` server, one headless Chromium, a separate context
(own session, no shared cookies) per page, all pages loading at the same time.

Explore pages each open a different (checkpoint, weld) pair through the query string, two
of them the same weld under both checkpoints; Compare pages compare the two sample
checkpoints on every sample weld. Each page's numbers, read from the JSON it exports (its
download button), must equal what the CLI (`python -m fusion_core explain`, run in this
process through `fusion_core.cli.main`) writes for the same inputs: no cross-talk through the
server's shared caches.

And, in-process (AppTest): the cached models are never written to. `fusion_core.explain` takes
gradients only with respect to the attention weights (detached leaves) through
`torch.autograd.grad`, which fills no `.grad`; loaded modules are `eval()` with
`requires_grad_(False)`; the randomized-weights twin is a deep copy (`sanity.randomized_copy`).
"""
from __future__ import annotations

import json
import time

import pytest
import torch

from conftest import wait_for_app
from test_app_support import errors, new_app, open_page, problems, use_data, weld_dirs
from test_browser_app import data  # noqa: F401  (module fixture: the data the server reads)

CKPTS = ("demo-early", "demo-best")
PAGE_TIMEOUT_MS = 240_000


def _cli_explain(tmp_path, root, ckpt: str, sample) -> dict:
    from fusion_core.cli import main

    out = tmp_path / f"cli-{ckpt}-{sample.name}.json"
    code = main(["explain", "--checkpoint", str(root / "checkpoints" / f"{ckpt}.safetensors"),
                 "--sample", str(sample), "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def _download(page, label: str) -> dict:
    button = page.get_by_test_id("stDownloadButton").filter(has_text=label).first
    button.scroll_into_view_if_needed()
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as dl:
        button.locator("button").click()
    return json.loads(open(dl.value.path(), "rb").read())


def _same(got, want, where: str, failures: list[str], tol: float = 0.0) -> None:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            failures.append(f"{where}: keys {sorted(got) if isinstance(got, dict) else got!r} != {sorted(want)}")
            return
        for k in want:
            _same(got[k], want[k], f"{where}.{k}", failures, tol)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            failures.append(f"{where}: length differs")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]", failures, tol)
    elif isinstance(want, float) and isinstance(got, (int, float)):
        if abs(got - want) > tol:
            failures.append(f"{where}: {got!r} != {want!r}")
    elif got != want:
        failures.append(f"{where}: {got!r} != {want!r}")


EXACT_KEYS = ("id", "missing", "attention", "relevance", "value_norms", "contributions", "token_shapley",
              "target_value", "coalition_values", "efficiency_gap", "top_modality", "prediction")


@pytest.mark.browser
def test_many_sessions_at_once_each_get_their_own_cli_results(browser, streamlit_server, data, tmp_path):  # noqa: F811
    welds = weld_dirs(data)
    assert len(welds) >= 8
    # (checkpoint, weld) per Explore page: 8 welds alternating checkpoints, and weld 0 under both.
    explore = [(CKPTS[i % 2], welds[i]) for i in range(8)] + [(CKPTS[1], welds[0])]
    compare_pick = [2, len(welds) - 1]                      # the weld each Compare page shows

    t0 = time.monotonic()
    want = {(c, w.name): _cli_explain(tmp_path, data, c, w) for c, w in explore}
    want_set = {c: _cli_explain(tmp_path, data, c, data) for c in CKPTS}          # every sample weld
    t_cli = time.monotonic() - t0

    contexts, pages = [], []
    for c, w in explore:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=streamlit_server,
                                  service_workers="block", accept_downloads=True)
        pg = ctx.new_page()
        pg.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(ctx)
        pages.append(("explore", (c, w), pg))
    for i in compare_pick:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=streamlit_server,
                                  service_workers="block", accept_downloads=True)
        pg = ctx.new_page()
        pg.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(ctx)
        pages.append(("compare", i, pg))
    try:
        t1 = time.monotonic()
        # All sessions start before any is waited for: the server runs them side by side.
        for kind, what, pg in pages:
            url = (f"/?checkpoint={what[0]}&weld={what[1].name}&view=Report+%26+export" if kind == "explore"
                   else "/compare")
            pg.goto(url, wait_until="commit")
        failures: list[str] = []
        for kind, what, pg in pages:
            wait_for_app(pg, PAGE_TIMEOUT_MS)
            if kind == "explore":
                c, w = what
                pg.get_by_role("heading", name=f"Weld {w.name}").wait_for()
                got = _download(pg, "Explanation (JSON)")
                ref = want[(c, w.name)]
                r = got["results"][0]
                if got.get("checkpoint", {}).get("path", "").split("/")[-1] != f"{c}.safetensors":
                    failures.append(f"{c}/{w.name}: page shows checkpoint {got.get('checkpoint')}")
                if got.get("checkpoint", {}).get("sha256") != ref["checkpoint"]["sha256"]:
                    failures.append(f"{c}/{w.name}: checkpoint sha differs")
                for key in EXACT_KEYS:
                    _same(r.get(key), ref["results"][0].get(key), f"{c}/{w.name}:{key}", failures)
                # the prediction line on the page says the same
                pred = ref["results"][0]["prediction"]
                line = pg.get_by_test_id("stMarkdown").filter(has_text="Prediction:").first.inner_text()
                p = pred["probabilities"][pred["class"]]
                if f"{pred['class']} ({p:.0%})" not in line:
                    failures.append(f"{c}/{w.name}: page says {line!r}, CLI {pred['class']} {p:.0%}")
            else:
                pg.get_by_role("heading", name="Compare two checkpoints").wait_for()
                got = _download(pg, "Comparison (JSON)")["results"]
                ra = {r["id"]: r for r in want_set["demo-early"]["results"]}
                rb = {r["id"]: r for r in want_set["demo-best"]["results"]}
                if [g["id"] for g in got] != [r["id"] for r in want_set["demo-early"]["results"]]:
                    failures.append(f"compare: welds {[g['id'] for g in got]}")
                for g in got:
                    a, b = ra[g["id"]], rb[g["id"]]
                    _same(g["top_modality"], {"a": a["top_modality"], "b": b["top_modality"],
                                              "agree": a["top_modality"] == b["top_modality"]},
                          f"compare {g['id']} top", failures)
                    _same(g["prediction"], {"a": a["prediction"]["class"], "b": b["prediction"]["class"],
                                            "agree": a["prediction"]["class"] == b["prediction"]["class"]},
                          f"compare {g['id']} prediction", failures)
                    for method in ("shapley", "leave_one_out"):
                        delta = {m: b["contributions"][method][m] - a["contributions"][method][m]
                                 for m in a["contributions"][method]}
                        # the CLI's JSON rounds to 7 significant digits; the comparison does not
                        _same(g["delta_contributions"][method], delta, f"compare {g['id']} {method}", failures,
                              tol=1e-5)
            if pg.locator('[data-testid="stException"]').count():
                failures.append(f"{kind} {what}: exception on the page")
        t_pages = time.monotonic() - t1
        assert not failures, "\n".join(failures[:40])
        print(f"\nconcurrency: {len(pages)} sessions ({len(explore)} Explore, {len(compare_pick)} Compare) "
              f"agree with the CLI; CLI {t_cli:.1f}s, pages {t_pages:.1f}s")
    finally:
        for ctx in contexts:
            ctx.close()


# --------------------------------------------------------------------------- cached models untouched

def _snapshot(ck) -> dict:
    out = {}
    for part in ("fusion", "classifier", "encoders"):
        mod = getattr(ck, part, None)
        if mod is None:
            continue
        for k, v in mod.state_dict().items():
            out[f"{part}.{k}"] = v.detach().clone()
        out[f"{part}.__flags"] = (mod.training, tuple(p.requires_grad for p in mod.parameters()),
                                  tuple(p.grad is None for p in mod.parameters()),
                                  tuple(p._version for p in mod.parameters()))
    return out


def test_cached_models_are_never_mutated_by_explaining(monkeypatch):
    """Explore (explanation with gradients, randomized twin) and Compare, then the cached
    checkpoint objects are bit-identical, still eval(), no .grad, no in-place writes."""
    from app import services

    data = use_data(monkeypatch)
    cks = {n: services.checkpoint_from_path(data / "checkpoints" / f"{n}.safetensors") for n in CKPTS}
    before = {n: _snapshot(ck) for n, ck in cks.items()}
    at = new_app().run()
    at.selectbox(key="explore_sample").set_value(weld_dirs(data)[3].name).run()
    at.selectbox(key="explore_ckpt").set_value("demo-early.safetensors").run()
    at.selectbox(key="explore_baseline").set_value("zeros").run()
    assert problems(at) == [] and errors(at) == []
    open_page(at, "compare").run()
    assert problems(at) == []
    for n in CKPTS:
        again = services.checkpoint_from_path(data / "checkpoints" / f"{n}.safetensors")
        assert again.fusion is cks[n].fusion                     # the cached object itself
        after = _snapshot(again)
        assert after.keys() == before[n].keys()
        for k, v in before[n].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, after[k]), f"{n}: {k} changed"
            else:
                assert v == after[k], f"{n}: {k} changed"
