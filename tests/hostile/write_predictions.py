"""Writes its own verdict and a predictions file holding a pickle that would run code on the host.

Contained: the host loads predictions with allow_pickle=False -> invalid_output; the pickle's
payload (create a marker file) never runs. The test substitutes the marker path.
"""
import json
import os

import numpy as np


class Payload:
    def __reduce__(self):
        return (os.system, ("touch __MARKER__",))


arr = np.array([Payload()], dtype=object)
np.savez("/ensnas-job/out/predictions.npz" if os.path.isdir("/ensnas-job/out") else "out/predictions.npz",
         val=arr, test=arr)
with open("/ensnas-job/out/result.json" if os.path.isdir("/ensnas-job/out") else "out/result.json", "w") as f:
    json.dump({"status": "ok", "param_count": 1, "train_seconds": [0.0, 0.0]}, f)
os._exit(0)
