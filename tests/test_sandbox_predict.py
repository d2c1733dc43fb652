"""`ensnas predict`: an export's probabilities computed in a sandbox equal what its plain-PyTorch
load.py returns, for every kind of member view, on every backend; the export's code cannot touch
the host from there (while load.py, in the caller's process, can: that is why predict exists)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluator.failures import ConfigError, FailureReason
from sandbox import Limits, make_sandbox
from tests.label_needles import write_small_table

MLP = (Path(__file__).parents[1] / "evaluator" / "programs" / "mlp.py").read_text()
CASES = {"plain": ("digits", MLP), "mask view": ("digits", "FEATURE_FRACTION = 0.5\n" + MLP),
         "columns view": ("tabular", "FEATURE_FRACTION = 0.5\n" + MLP)}
LOAD_AND_PREDICT = ("import sys, numpy as np, torch; sys.path.insert(0, sys.argv[1]); from load import load_ensemble; "
                    "ens = load_ensemble(sys.argv[1]); x = torch.as_tensor(np.load(sys.argv[2]));\n"
                    "with torch.no_grad(): np.save(sys.argv[3], ens(x).numpy())")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, cache_dir):
    """name -> (export dir, inputs .npy): members trained in a sandbox, exported by agent.deploy."""
    from agent.deploy import _export
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import ProxyBudget, get_task
    root = tmp_path_factory.mktemp("exports")
    root.chmod(0o755)
    csv = write_small_table(root / "table.csv")
    made = {}
    for name, (task_name, source) in CASES.items():
        task = get_task(task_name, data_path=str(csv) if task_name == "tabular" else None)
        task = task.model_copy(update={"budget": ProxyBudget(epochs=1, batch_size=64)})
        evaluator = Evaluator(task=task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=300),
                              cache_dir=cache_dir)
        keep = root / f"keep-{name.replace(' ', '_')}"
        result = evaluator.evaluate(source, instances=3, seed_base=1000, keep_dir=keep, save_weights=True)
        assert result.ok, result.detail
        export = root / f"export-{name.replace(' ', '_')}"
        _export(export, source, keep / "out", result.seeds, evaluator, result.feature_fraction,
                result.test_probs.mean(0))
        inputs = root / f"x-{name.replace(' ', '_')}.npy"
        np.save(inputs, np.load(evaluator.data.inputs_dir / "x_test.npy")[:64])
        made[name] = export, inputs
    made["table"] = csv
    return made


RAW_PREDICT = ("import sys, numpy as np, pandas as pd; sys.path.insert(0, sys.argv[1]); import load; "
               "raw = pd.read_csv(sys.argv[2]) if sys.argv[2].endswith('.csv') else np.load(sys.argv[2]); "
               "np.save(sys.argv[3], load.predict(raw, sys.argv[1]))")


def _load_py(export: Path, inputs: Path, tmp_path: Path, *, raw: bool = False) -> np.ndarray:
    """What a user gets from the export with plain PyTorch, in a fresh interpreter."""
    out = tmp_path / "reference.npy"
    subprocess.run([sys.executable, "-c", RAW_PREDICT if raw else LOAD_AND_PREDICT, str(export), str(inputs),
                    str(out)], check=True, cwd=tmp_path, timeout=300)
    return np.load(out)


def _backend(kind: str, request):
    if kind == "docker":
        return request.getfixturevalue("docker_sandbox")
    return make_sandbox(kind)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("kind", ["process", "docker", "subprocess"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sandboxed_predictions_equal_load_py(kind, case, exports, tmp_path, request):
    from evaluator.predict import predict_export
    export, inputs = exports[case]
    reference = _load_py(export, inputs, tmp_path)
    probs = predict_export(export, np.load(inputs), sandbox=_backend(kind, request), limits=Limits(timeout_s=300))
    assert probs.shape == reference.shape == (64, json.loads((export / "manifest.json").read_text())["num_classes"])
    np.testing.assert_allclose(probs, reference, atol=1e-5)


@pytest.mark.slow
def test_cli_predict_writes_the_probabilities(exports, tmp_path, capsys):
    from agent.cli import main
    export, inputs = exports["mask view"]
    out = tmp_path / "p.npy"
    assert main(["predict", str(export), "--inputs", str(inputs), "--out", str(out), "--sandbox", "process"]) == 0
    np.testing.assert_allclose(np.load(out), _load_py(export, inputs, tmp_path), atol=1e-5)
    assert "predicted 64 inputs" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain", "columns view"])
def test_raw_inputs_get_the_exports_preprocessing(case, exports, tmp_path):
    """--raw: the task's raw inputs (sklearn's 0-16 digit images, table rows by column name) give what
    load.predict(raw) gives; the preprocessing runs on the host from the manifest's spec."""
    from agent.cli import main
    export, _ = exports[case]
    if case == "plain":
        from sklearn.datasets import load_digits
        raw = tmp_path / "raw.npy"
        np.save(raw, load_digits().images[:50])
    else:
        import pandas as pd
        raw = tmp_path / "rows.csv"
        pd.read_csv(exports["table"]).drop(columns=["label"]).head(50).to_csv(raw, index=False)
    out = tmp_path / "p.npy"
    assert main(["predict", str(export), "--inputs", str(raw), "--out", str(out), "--raw", "--sandbox", "process"]) == 0
    np.testing.assert_allclose(np.load(out), _load_py(export, raw, tmp_path, raw=True), atol=1e-5)


@pytest.mark.slow
def test_export_code_touches_the_host_through_load_py_not_through_predict(exports, tmp_path):
    """A program.py that writes a file on the host when imported: load.py runs it in the caller's
    process (the marker appears); predict runs it in the process sandbox (it does not)."""
    from evaluator.predict import predict_export
    import shutil
    export, inputs = exports["plain"]
    hostile = tmp_path / "hostile-export"
    shutil.copytree(export, hostile)
    hostile.chmod(0o755)
    marker = tmp_path / "written-by-the-export"
    (hostile / "program.py").write_text(f"try:\n    open({str(marker)!r}, 'w').write('pwned')\nexcept OSError:\n"
                                        "    pass\n" + MLP)
    probs = predict_export(hostile, np.load(inputs), sandbox=make_sandbox("process"), limits=Limits(timeout_s=300))
    assert probs.shape[0] == 64 and not marker.exists()
    _load_py(hostile, inputs, tmp_path)
    assert marker.read_text() == "pwned"


def test_bad_exports_and_inputs_are_config_errors(tmp_path, capsys):
    from agent.cli import main
    from evaluator.predict import prepare_inputs, read_manifest
    with pytest.raises(ConfigError, match="not an ensnas export"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"num_classes": 2, "input_shape": [3],
                                                        "members": [{"weights": "../../etc/passwd"}]}))
    with pytest.raises(ConfigError, match="missing"):
        read_manifest(tmp_path)
    manifest = {"input_shape": [1, 8, 8]}
    assert prepare_inputs(manifest, np.zeros((1, 8, 8))).shape == (1, 1, 8, 8)  # one example
    with pytest.raises(ConfigError, match="expected"):
        prepare_inputs(manifest, np.zeros((5, 64)))
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    assert main(["predict", str(tmp_path), "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.npy"),
                 "--sandbox", "subprocess"]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_export_is_a_typed_failure(exports, tmp_path):
    from evaluator.predict import predict_export
    from evaluator.failures import EvaluationFailed
    import shutil
    export, inputs = exports["plain"]
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    (broken / "program.py").write_text(MLP.replace("HIDDEN = 128", "HIDDEN = 64"))  # weights no longer fit
    with pytest.raises(EvaluationFailed) as info:
        predict_export(broken, np.load(inputs), sandbox=make_sandbox("process"), limits=Limits(timeout_s=300))
    assert info.value.reason == FailureReason.build_error and "member_1000.pt" in info.value.detail
