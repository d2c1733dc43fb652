"""Replaces out/predictions.npz with a symlink to a host file (the labels), hoping the host follows it.

Contained: the host refuses non-regular files in out/ -> invalid_output. Test substitutes the path.
"""
import json
import os

out = "/ensnas-job/out" if os.path.isdir("/ensnas-job/out") else "out"
os.symlink("__LABELS_PATH__", os.path.join(out, "predictions.npz"))
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"status": "ok", "param_count": 1}, f)
os._exit(0)
