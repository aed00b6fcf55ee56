"""Input widgets shared by the pages: checkpoint picker/uploader, weld picker/uploaders,
the target and map-kind selectors, and the hand-over of a weld from one page to Explore.

Every user-input problem is shown with `st.error(str(err))` (the `InputError` names the
file and the problem) and the picker returns the last input that worked, kept in
`st.session_state`, so the page stays usable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain.engine import MAP_KINDS
from fusion_core.io.features import FeatureBatch
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import SEED_DEFAULT_HEADS, LoadedCheckpoint
from fusion_core.vocab import CLASS_NAMES, class_code_of

from app import services
from app.state import KEEP

UPLOAD_CKPT = "Upload a checkpoint…"
SAMPLE, ZIP, FILES, FEATURES = "Sample weld", "Upload a zip", "Upload weld files", "Upload a feature file"
CKPT_TYPES = ["safetensors", "pt", "pth", "ckpt"]
WELD_FILE_TYPES = ["avi", "mp4", "mov", "mkv", "flac", "wav", "csv", "jpg", "jpeg", "png", "json"]
# The app's own bound on one upload: services.upload_limit_bytes (here for the pages and tests).
UPLOAD_LIMIT_ENV = services.UPLOAD_LIMIT_ENV
upload_limit_bytes = services.upload_limit_bytes


PROBLEMS = "input_problems"     # this run's input errors, repeated in the main area


def input_error(e: InputError) -> None:
    """Show an input problem here (in the sidebar, beside the input) and keep it for
    `main_area_problems`, so it is not missed."""
    st.error(str(e))
    st.session_state.setdefault(PROBLEMS, []).append(str(e))


def clear_problems() -> None:
    """Forget the input problems of the last run (the router calls it before each page)."""
    st.session_state.pop(PROBLEMS, None)


def main_area_problems() -> None:
    """This run's input problems, in the main area above the result that is kept."""
    for msg in st.session_state.pop(PROBLEMS, []):
        # The message stays one line (names are escaped, never spread over lines); the note
        # about what is shown goes under it.
        st.error(msg)
        st.caption("Not loaded: what is shown below is the last input that worked.")


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def check_type(name: str, types: list[str] | None) -> None:
    """InputError naming the file unless its extension is one of `types` (None: any). The
    uploaders take any file, so a wrong one gets this message rather than the browser's bare
    red mark, which says nothing until hovered."""
    ext = Path(name).suffix.lower().lstrip(".")
    if types is not None and ext not in types:
        raise InputError(name, f"{'a .' + ext if ext else 'a'} file cannot be read here; choose "
                               + ", ".join(f".{t}" for t in types))


def upload_bytes(up, types: list[str] | None = None) -> bytes:
    """The bytes of one uploaded file, after checking its type (`types`: extensions without
    the dot) and its size against the limit."""
    check_type(up.name, types)
    limit = upload_limit_bytes()
    size = int(getattr(up, "size", 0) or 0)
    if size > limit:
        raise InputError(up.name, f"file is {_mb(size)}, above the upload limit of {_mb(limit)}")
    data = up.getvalue()
    if len(data) > limit:
        raise InputError(up.name, f"file is {_mb(len(data))}, above the upload limit of {_mb(limit)}")
    return data


def uploads_bytes(ups, types: list[str] | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) of several uploaded files: each of `types`, each and all together within the limit."""
    limit = upload_limit_bytes()
    out, total = [], 0
    for u in ups:
        data = upload_bytes(u, types)
        total += len(data)
        if total > limit:
            raise InputError(u.name, f"the files together are above the upload limit of {_mb(limit)}")
        out.append((u.name, data))
    return out


@dataclass
class WeldInput:
    """What the weld picker chose: one decoded weld, or one row of a feature file."""

    kind: str                          # "weld" | "features"
    label: str
    key: str                           # weld digest, or feature-file sha256
    weld: Weld | None = None
    features: FeatureBatch | None = None
    row: int = 0
    extra: dict = field(default_factory=dict)


def class_label(name: str) -> str:
    """A weld id with the class its part number names: "000103 · burnthrough"."""
    code = class_code_of(name)
    return name if code is None else f"{name} · {CLASS_NAMES[code]}"


def _index(options: list[str], wanted: str | None, fallback: int = 0) -> int:
    if wanted:
        for i, o in enumerate(options):
            if o == wanted or Path(o).stem == wanted or wanted in o:
                return i
    return fallback


def _initial(widget_key: str, index: int) -> dict:
    """`index=` only on a widget's first run: later its state (possibly set by another page) wins."""
    return {} if widget_key in st.session_state else {"index": index}


def _good(key: str, value=None):
    """Remember (with value) or recall (without) the last input that worked."""
    if value is not None:
        st.session_state[key] = value
        return value
    return st.session_state.get(key)


# --------------------------------------------------------------------------- checkpoints

ASSUMED_HEADS = "assumed head count"


def heads_assumed(ck: LoadedCheckpoint | None) -> bool:
    return bool(ck is not None and getattr(ck.info, "heads_assumed", False))


def output_label(ck: LoadedCheckpoint) -> str:
    """Which output the cosine and anomaly targets explain."""
    out = getattr(ck.info, "output", "fused") or "fused"
    if out == "fused":
        return "output: fused (before any output norm)"
    return f"output: {out} (the model's embedding)"


def checkpoint_facts(ck: LoadedCheckpoint) -> None:
    i = ck.info
    parts = [i.architecture + (f" {i.layout}" if i.layout else "")]
    d = i.dims
    if "hidden" in d:
        parts.append(f"H={d['hidden']}" + (f", T={d['tokens']}" if "tokens" in d else ""))
    if i.heads is not None:
        src = "ASSUMED" if heads_assumed(ck) else i.heads_source.split(" (")[0]
        parts.append(f"{i.heads} heads ({src})")
    parts.append(output_label(ck))
    if i.epoch is not None:
        parts.append(f"epoch {i.epoch}")
    if i.metric is not None:
        parts.append(f"metric {i.metric:.3f}")
    parts.append(f"sha256 {i.sha256[:12]}")
    st.caption(" · ".join(parts))
    with st.popover("Checkpoint facts", width="stretch"):   # mounts its code block only when opened
        st.code("\n".join(i.summary_lines()), language=None, wrap_lines=True)


def _heads_input(key: str, choice: str, ck: LoadedCheckpoint, heads: int | None) -> None:
    """The head-count input (when the file does not state it), with a warning beside it
    while the count is assumed. A count counts as given only once the user changes it for
    this checkpoint, so the input's own default never hides the assumption."""
    def given():
        st.session_state[f"{key}_heads_for"] = choice
    if heads_assumed(ck):
        st.warning(f"**Head count assumed: {ck.info.heads}.** The file, a sidecar JSON and the published "
                   "configurations do not say how many attention heads this model has, so per-head views "
                   "and every number below depend on this guess. Enter the count the model was trained with "
                   f"here, or put {{\"num_heads\": N}} in {Path(ck.info.path).stem}.json next to the checkpoint.",
                   icon="⚠️")
    st.number_input("Heads (the file does not say)", min_value=1, max_value=256,
                    value=int(heads or ck.info.heads or SEED_DEFAULT_HEADS), step=1, key=f"{key}_heads",
                    on_change=given, help="The head count is in no tensor shape; the hidden size must divide by it.")


def _checkpoint_options(key: str, default: str, query_param: str | None) -> tuple[list[Path], list[str], int]:
    """The checkpoint files, the picker's options and the option it starts on."""
    files = services.list_checkpoints()
    external = st.session_state.get(f"{key}_external")          # (label, LoadedCheckpoint) from another page
    options = [p.name for p in files] + ([external[0]] if external else []) + [UPLOAD_CKPT]
    wanted = st.query_params.get(query_param) if query_param else None
    return files, options, _index(options, wanted or default, fallback=0)


def checkpoint_picker(key: str, *, label: str = "Checkpoint", default: str = "demo-best",
                      query_param: str | None = None) -> LoadedCheckpoint | None:
    """Pick a checkpoint from the data folder's checkpoints/ or upload one; shows its facts.

    A head-count input appears when the file does not say how many heads it has; while the
    count is assumed, a warning beside it says so."""
    files, options, idx = _checkpoint_options(key, default, query_param)
    names = [p.name for p in files]
    external = st.session_state.get(f"{key}_external")          # (label, LoadedCheckpoint) from another page
    choice = st.selectbox(label, options, key=f"{key}_ckpt", **_initial(f"{key}_ckpt", idx))
    given = st.session_state.get(f"{key}_heads_for") == choice
    heads = st.session_state.get(f"{key}_heads") if given else None
    ck = None
    try:
        if choice == UPLOAD_CKPT:
            up = st.file_uploader("Checkpoint file (.safetensors, .pt, .pth, .ckpt)", key=f"{key}_ckpt_upload",
                                  help="Read weights-only; nothing in the file runs.")
            if up is not None:
                ck = services.checkpoint_from_upload(up.name, upload_bytes(up, CKPT_TYPES), heads)
            else:
                st.caption("Choose a .safetensors, .pt, .pth or .ckpt file.")
        elif external and choice == external[0]:
            ck = external[1]
        else:
            ck = services.checkpoint_from_path(files[names.index(choice)], heads)
    except InputError as e:
        input_error(e)
        ck = None
    if ck is None:
        ck = _good(f"{key}_ckpt_good")
        if ck is not None:
            st.caption(f"Still showing {Path(ck.info.path).name}.")
    else:
        _good(f"{key}_ckpt_good", ck)
    if ck is not None:
        src = ck.info.heads_source
        if ck.info.architecture == "cross-attention" and not src.startswith("checkpoint"):
            _heads_input(key, choice, ck, heads)
        checkpoint_facts(ck)
    return ck


# --------------------------------------------------------------------------- welds

def _sample_weld(key: str, wanted: str | None) -> WeldInput | None:
    folders = services.list_weld_folders()
    if not folders:
        st.warning(f"No sample welds in {services.data_dir()}.")
        return None
    ids = [p.name for p in folders]
    choice = st.selectbox("Weld", ids, format_func=class_label, key=f"{key}_sample",
                          **_initial(f"{key}_sample", _first_sample(ids, wanted)))
    return _sample_input(folders[ids.index(choice)])


def _first_sample(ids: list[str], wanted: str | None) -> int:
    """The sample weld the URL names; else a defective one, which has something to find (the
    first "good" one has not)."""
    first_defect = next((i for i, w in enumerate(ids) if class_code_of(w) not in (None, 0)), 0)
    return _index(ids, wanted, fallback=first_defect)


def _sample_input(folder: Path) -> WeldInput:
    weld = services.weld_from_folder(folder)
    return WeldInput("weld", weld.weld_id, weld.digest, weld=weld,
                     extra={"reread": lambda opts: services.weld_from_folder(folder, **opts)})


def _pick_one(key: str, welds: list[Weld], source: str, reread: Callable[[dict], list[Weld]] | None = None
              ) -> WeldInput:
    i = 0
    if len(welds) > 1:
        ids = [w.weld_id for w in welds]
        i = int(st.selectbox(f"Weld in {source}", range(len(ids)), format_func=lambda i: class_label(ids[i]),
                             key=f"{key}_zip_pick"))
    weld = welds[i]
    extra = {"reread": lambda opts: reread(opts)[i]} if reread else {}
    return WeldInput("weld", weld.weld_id, weld.digest, weld=weld, extra=extra)


def weld_picker(key: str, *, query_param: str | None = None) -> WeldInput | None:
    """Pick a sample weld, or upload a zip, single weld files, or a feature file."""
    external = st.session_state.get(f"{key}_external_weld")      # (label, Weld) from another page
    options = [SAMPLE, ZIP, FILES, FEATURES] + ([external[0]] if external else [])
    source = st.radio("Weld from", options, key=f"{key}_weld_source")
    wanted = st.query_params.get(query_param) if query_param else None
    got: WeldInput | None = None
    try:
        if source == SAMPLE:
            got = _sample_weld(key, wanted)
        elif source == ZIP:
            up = st.file_uploader("Zipped weld folder(s) (.zip)", key=f"{key}_zip")
            if up is not None:
                name, data = up.name, upload_bytes(up, ["zip"])
                got = _pick_one(key, services.welds_from_zip(name, data), name,
                                reread=lambda opts: services.welds_from_zip(name, data, **opts))
        elif source == FILES:
            ups = st.file_uploader("Weld files (.avi, .flac/.wav, .csv, photos, truth.json)",
                                   accept_multiple_files=True, key=f"{key}_files")
            if ups:
                files = uploads_bytes(ups, WELD_FILE_TYPES)
                weld = services.weld_from_files(files)
                got = WeldInput("weld", weld.weld_id, weld.digest, weld=weld,
                                extra={"reread": lambda opts: services.weld_from_files(files, **opts)})
        elif source == FEATURES:
            up = st.file_uploader("Feature file (.npz, .safetensors, .pt)", key=f"{key}_features")
            if up is not None:
                data = upload_bytes(up, ["npz", "safetensors", "pt", "pth"])
                fb = services.features_from_upload(up.name, data)
                row = 0
                if fb.batch_size > 1:
                    row = int(st.selectbox("Sample", range(fb.batch_size), format_func=lambda i: fb.ids[i],
                                           key=f"{key}_feature_row"))
                label = fb.ids[row] if fb.ids else f"{up.name}[{row}]"
                got = WeldInput("features", label, services.sha_of_bytes(data), features=fb, row=row,
                                extra={"file": up.name})
        elif external and source == external[0]:
            weld = external[1]
            got = WeldInput("weld", weld.weld_id, weld.digest, weld=weld)
    except InputError as e:
        input_error(e)
        got = None
    if got is None:
        got = _good(f"{key}_weld_good")
        if got is not None and source != SAMPLE:
            st.caption(f"Showing {got.label} until a new input works.")
    else:
        _good(f"{key}_weld_good", got)
    return got


def first_inputs(key: str, *, default: str, ckpt_query_param: str, weld_query_param: str
                 ) -> tuple[LoadedCheckpoint, WeldInput] | None:
    """What `checkpoint_picker` and `weld_picker` under `key` will show when first drawn in this
    session, without drawing them: a checkpoint of the data folder and a sample weld (the URL's
    or the defaults). None when the session has chosen anything under `key` yet (a page visited
    before, a hand-over from another page), or when either is not such a file, or cannot be
    read (the pickers then say why)."""
    if any(k.startswith(f"{key}_") or k.startswith(f"{KEEP}{key}_") for k in st.session_state):
        return None
    files, options, idx = _checkpoint_options(key, default, ckpt_query_param)
    folders = services.list_weld_folders()
    if options[idx] == UPLOAD_CKPT or not folders:
        return None
    ids = [p.name for p in folders]
    try:
        return (services.checkpoint_from_path(files[idx]),
                _sample_input(folders[_first_sample(ids, st.query_params.get(weld_query_param))]))
    except InputError:
        return None


def weld_set_picker(key: str) -> tuple[list[Weld], str] | None:
    """A set of welds: a folder on this machine (the data folder by default) or an uploaded zip."""
    source = st.radio("Welds from", ["Folder", "Upload a zip"], key=f"{key}_set_source", horizontal=True)
    got = None
    try:
        if source == "Folder":
            folder = st.text_input("Folder of weld folders", value=str(services.data_dir()), key=f"{key}_folder")
            got = (services.welds_from_folder(Path(folder)), folder)
        else:
            up = st.file_uploader("Zip of weld folders (.zip)", key=f"{key}_set_zip")
            if up is not None:
                got = (services.welds_from_zip(up.name, upload_bytes(up, ["zip"])), up.name)
        if got is not None and not got[0]:
            raise InputError(got[1], "no welds found")
    except InputError as e:
        input_error(e)
        got = None
    if got is None:
        got = _good(f"{key}_set_good")
    else:
        _good(f"{key}_set_good", got)
    return got


# --------------------------------------------------------------------------- explanation choices

def target_options(ck: LoadedCheckpoint | None) -> list[str]:
    opts = ["auto"]
    if ck is not None and ck.classifier is not None:
        opts.append("logit")
        opts += [f"class:{n}" for n in (ck.class_names or [])]
    return opts + ["cosine", "anomaly"]


# Map kinds under their names before fusion_core named them all MAP_KINDS.
OLD_MAP_KINDS = {"value": "value_norms", "value_weighted": "value_norms"}


CONTROL_WIDTH = 200       # px of a selector in a `control_row`


def control_row():
    """A row of display controls that wraps onto the next line when the page is narrow
    (selectors `CONTROL_WIDTH` wide, toggles as wide as their label), so no label is cut."""
    return st.container(horizontal=True, wrap=True, gap="medium", vertical_alignment="bottom")


def map_kind_picker(where, key: str, **kw) -> str:
    """The "Map" selector (a key of fusion_core.explain.engine.MAP_KINDS) in `where`; a
    session that still holds an old name gets the new one."""
    if st.session_state.get(key) in OLD_MAP_KINDS:
        st.session_state[key] = OLD_MAP_KINDS[st.session_state[key]]
    return where.selectbox("Map", list(MAP_KINDS), format_func=MAP_KINDS.get, key=key, **kw)


def head_picker(where, key: str, heads: int, *, assumed: bool = False, **kw):
    """The "Head" selector: "mean" (of heads) or a head index below `heads`; labelled
    "assumed head count" when the checkpoint's head count is a guess."""
    label = "Head" + (f" ({ASSUMED_HEADS})" if assumed else "")
    if assumed:
        kw["help"] = (kw.get("help", "") + " The head count is assumed: the file does not state it, so each "
                      "head here depends on that guess.").strip()
    return where.selectbox(label, ["mean"] + list(range(heads)), key=key,
                           format_func=lambda h: "mean of heads" if h == "mean" else
                           f"head {h}" + (" (assumed count)" if assumed else ""), **kw)


# --------------------------------------------------------------------------- hand-over between pages

def request(key: str, *, weld_path: str | None = None, weld: Weld | None = None, ckpt_name: str | None = None,
            ckpt: LoadedCheckpoint | None = None) -> None:
    """Ask the pickers under `key` (next run of their page) to show this weld with this checkpoint."""
    st.session_state[f"{key}_request"] = {"weld_path": weld_path, "weld": weld, "ckpt_name": ckpt_name,
                                          "ckpt": ckpt}


def apply_request(key: str) -> None:
    """Before any widget of the page exists, turn a pending request into widget state."""
    req = st.session_state.pop(f"{key}_request", None)
    if not req:
        return
    if req.get("weld_path"):
        st.session_state[f"{key}_weld_source"] = SAMPLE
        st.session_state[f"{key}_sample"] = req["weld_path"].rstrip("/").split("/")[-1]
    elif req.get("weld") is not None:
        label = f"From the Dataset page: {req['weld'].weld_id}"
        st.session_state[f"{key}_external_weld"] = (label, req["weld"])
        st.session_state[f"{key}_weld_source"] = label
    names = [p.name for p in services.list_checkpoints()]
    if req.get("ckpt_name") in names:
        st.session_state[f"{key}_ckpt"] = req["ckpt_name"]
    elif req.get("ckpt") is not None:
        label = f"{req['ckpt'].info.path} (from the Dataset page)"
        st.session_state[f"{key}_external"] = (label, req["ckpt"])
        st.session_state[f"{key}_ckpt"] = label
    st.session_state.pop(f"{key}_cell", None)
