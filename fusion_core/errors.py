"""One error type for everything a user can get wrong, and the one way names are printed.

Every problem with a file the user gave us (checkpoint, weld, feature file, upload)
is raised as `InputError(source, problem)`. The CLI prints `str(err)` on one line and
exits 2; the app shows it in an error box. Anything else is a bug in this project.

A file name is the user's data, not ours: a weld folder called "ok\\n\\x1b[2J ALL WELDS OK"
must not print a second line or clear a terminal. `printable` escapes control and
bidirectional-override characters, so an error is always one honest line.
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Characters that reorder what follows them on screen (Trojan-source style spoofing).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if ch in _BIDI or not ch.isprintable():
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return ch


def printable(text: object, *, keep_backslashes: bool = True) -> str:
    """`text` with control, surrogate and bidi-override characters escaped (\\n, \\x1b, \\u202e);
    printable text, accents and CJK included, is unchanged. Backslashes stay as they are
    unless `keep_backslashes` is False (then they are doubled, making the escaping reversible)."""
    s = str(text)
    if s.isprintable() and not (_BIDI & set(s)) and (keep_backslashes or "\\" not in s):
        return s
    return "".join(ch if (ch == "\\" and keep_backslashes) else _escape(ch) for ch in s)


class InputError(ValueError):
    """A user-supplied input cannot be used. `source` names the file, `problem` says why.

    Both are stored printable and on one line: whitespace runs in the problem collapse to a
    space, and control characters in either are escaped.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = printable(os.fspath(source)) if source is not None else ""
        self.problem = printable(" ".join(str(problem).split()))  # one line, always
        super().__init__(f"{self.source}: {self.problem}" if self.source else self.problem)
