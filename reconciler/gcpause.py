"""The cyclic garbage collector held off while a step builds an object per file."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: building an object per file (tuples, entries, JSON
    documents, none of them cyclic) would otherwise trigger collections that scan every object made so far, a
    fifth of a walk's time and more than half of a file list's decoding. What the block made is then frozen (left
    out of later collections; freed by reference counting as usual), so the first collection after it does not
    scan them all either. Nested blocks are one block: only the outermost enables and freezes."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.enable()
