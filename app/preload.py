"""Imported once by app/main.py before any page: every module the pages use, loaded by one thread.

Streamlit runs each session's script in its own thread. When several sessions start at once
on a fresh server, their pages import `fusion_core` side by side, and the package's
`__init__` importing its submodules while another thread imports one of them directly ends
in "cannot import name … from partially initialized module" (Python breaks the import-lock
cycle by handing one thread a half-built module). Importing this module first serializes
all of that behind one module lock: the second session waits until the first has finished.
"""
import fusion_core  # noqa: F401
import fusion_core.explain.compare  # noqa: F401
import fusion_core.explain.engine  # noqa: F401
import fusion_core.explain.welds  # noqa: F401
import fusion_core.explain.sanity  # noqa: F401

from app import figures, state, ui, widgets  # noqa: F401
