"""Load an exported ensnas ensemble with plain PyTorch (this file is the export's load.py).

    import load
    ens = load.load_ensemble("path/to/export")       # a torch.nn.Module: ens(x) → probabilities
    probs = load.predict(raw_inputs, "path/to/export")  # raw task inputs, preprocessed as in training

`predict` applies the task's input preprocessing recorded in manifest.json (scale, mean/std,
column encodings; preprocess.py next to this file) and returns the ensemble's class
probabilities as a numpy array. `ens(x)` takes inputs that are already preprocessed.

Warning: loading imports program.py, the searched candidate's own code, outside any sandbox.
Load only exports whose program you trust (or read program.py first), or predict in a sandbox:
    ensnas predict EXPORT_DIR --inputs X.npy --out P.npy [--raw]
"""
import importlib.util
import json
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


class Ensemble(torch.nn.Module):
    def __init__(self, members, views):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.views = views

    def forward(self, x):
        probs = []
        for member, view in zip(self.members, self.views):
            xin = x
            if view is not None:
                idx = torch.as_tensor(view["features"])
                flat = x.flatten(1)
                if view["mode"] == "columns":
                    xin = flat[:, idx]
                else:
                    mask = torch.zeros(flat.shape[1], dtype=x.dtype)
                    mask[idx] = 1
                    xin = (flat * mask).view_as(x)
            probs.append(torch.softmax(member(xin), dim=-1))
        return torch.stack(probs).mean(0)


def _module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest(directory=HERE):
    return json.loads((Path(directory) / "manifest.json").read_text())


def load_ensemble(directory=HERE):
    directory = Path(directory)
    info = manifest(directory)
    program = _module("program", directory / "program.py")
    members, views = [], []
    for m in info["members"]:
        model = program.build_model(tuple(m["input_shape"]), info["num_classes"])
        model.load_state_dict(torch.load(directory / m["weights"], weights_only=True))
        model.eval()
        members.append(model)
        views.append(m.get("view"))
    return Ensemble(members, views).eval()


def preprocess(raw_inputs, directory=HERE):
    """Raw task inputs (manifest["preprocessing"]["input"] says what they are) → model inputs."""
    directory = Path(directory)
    spec = manifest(directory).get("preprocessing")
    if spec is None:
        raise ValueError("this export records no input preprocessing: pass preprocessed inputs to load_ensemble()")
    return torch.from_numpy(_module("preprocess", directory / "preprocess.py").apply(spec, raw_inputs))


def predict(raw_inputs, directory=HERE, *, batch_size=1024, ensemble=None):
    """Class probabilities [n, classes] (numpy) for raw task inputs."""
    ens = ensemble if ensemble is not None else load_ensemble(directory)
    x = preprocess(raw_inputs, directory)
    with torch.no_grad():
        return torch.cat([ens(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()
