"""One error type for everything a user can get wrong.

Every problem with a file the user gave us (checkpoint, weld, feature file, upload)
is raised as `InputError(source, problem)`. The CLI prints `str(err)` on one line and
exits 2; the app shows it in an error box. Anything else is a bug in this project.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A user-supplied input cannot be used. `source` names the file, `problem` says why."""

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = str(source) if source is not None else ""
        self.problem = " ".join(str(problem).split())  # one line, always
        super().__init__(f"{self.source}: {self.problem}" if self.source else self.problem)
