"""One process-wide lock around everything that builds Python AST objects: `ast.parse` (and so
`ast.literal_eval`) and numpy's .npy/.npz readers, which parse each array's header with it.

CPython 3.11 keeps the AST converter's recursion depth per interpreter, not per thread
(python/cpython#106905): two threads converting at once can fail with `SystemError: AST
constructor recursion depth mismatch`. ensnas parses in threads (executor workers reading
predictions, the overlapped pipeline's proposers); CI hit it with two gate trainings reading .npy
headers at the same moment. Every such call in library code takes this lock (tests/test_parse_lock.py
checks that no other call remains). Not re-entrant: a block that holds it must not call another."""
from __future__ import annotations

import ast
import threading

PARSE_LOCK = threading.Lock()


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """ast.parse under PARSE_LOCK."""
    with PARSE_LOCK:
        return ast.parse(source, filename)


def load_npy(path, **kwargs):
    """np.load of one .npy (its header is parsed with ast.literal_eval) under PARSE_LOCK."""
    import numpy as np
    with PARSE_LOCK:
        return np.load(path, **kwargs)


def load_npz(path, *, allow_pickle: bool = False) -> dict:
    """Every array of an .npz, read under PARSE_LOCK (each member's header is parsed on access)."""
    import numpy as np
    with PARSE_LOCK, np.load(path, allow_pickle=allow_pickle) as z:
        return {name: z[name] for name in z.files}
