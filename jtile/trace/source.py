"""Source locations of T.* calls: the first stack frame outside jtile itself."""

from __future__ import annotations

import os
import sys

from jtile.ir.nodes import NO_LOC, SourceLoc

_JTILE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_location() -> SourceLoc:
    """The user's line that called into jtile (frames inside the jtile package are skipped)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_JTILE_DIR + os.sep):
            return SourceLoc(filename, frame.f_lineno)
        frame = frame.f_back
    return NO_LOC
