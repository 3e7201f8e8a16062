#!/usr/bin/env python3
"""Writes a labelled file of fraud rows for `podium batch` and `podium compare`.

The rows come from the generator the demo fraud models were trained with
(models/make_models.py: make_classification(n_samples=5000, n_features=30,
n_informative=12, weights=[0.9, 0.1], random_state=0)), sampled without
replacement with --seed. The demo models saw every one of those rows in
training, so the numbers show how the commands work, not how good the models
are: in real use, hold out rows the models never saw.

Columns: f0 … f29 (float32, the model input "input" in order) and label
(int64, 1 = fraud); with --list-column, one column "input" holding the 30
values per row instead of f0 … f29.

    .venv-test/bin/python scripts/make-heldout.py --rows 2000 --out heldout.parquet
    .venv-test/bin/python scripts/make-heldout.py --rows 2000 --out heldout.csv

Needs numpy, scikit-learn and pyarrow (all in tests/python/requirements.txt,
installed into .venv-test by scripts/test.sh).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.datasets import make_classification

TRAINING_ROWS = 5000
FEATURES = 30


def fraud_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` rows (features float32, labels int64) of the demo's training data."""
    X, y = make_classification(
        n_samples=TRAINING_ROWS,
        n_features=FEATURES,
        n_informative=12,
        weights=[0.9, 0.1],
        random_state=0,
    )
    picked = np.random.default_rng(seed).choice(TRAINING_ROWS, size=rows, replace=False)
    return X[picked].astype(np.float32), y[picked].astype(np.int64)


def table(X: np.ndarray, y: np.ndarray, list_column: bool) -> pa.Table:
    if list_column:
        values = pa.array(X.reshape(-1), type=pa.float32())
        columns = {"input": pa.FixedSizeListArray.from_arrays(values, FEATURES)}
    else:
        columns = {f"f{i}": pa.array(X[:, i], type=pa.float32()) for i in range(FEATURES)}
    columns["label"] = pa.array(y, type=pa.int64())
    return pa.table(columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows to write (at most 5000; default 2000)")
    parser.add_argument("--out", default="heldout.parquet", help="*.parquet or *.csv (default heldout.parquet)")
    parser.add_argument("--seed", type=int, default=1, help="which rows are picked (default 1)")
    parser.add_argument("--list-column", action="store_true", help="one list column \"input\" instead of f0..f29")
    args = parser.parse_args()
    if not 1 <= args.rows <= TRAINING_ROWS:
        parser.error(f"--rows must be between 1 and {TRAINING_ROWS}")
    X, y = fraud_rows(args.rows, args.seed)
    t = table(X, y, args.list_column)
    if args.out.endswith(".csv"):
        if args.list_column:
            parser.error("--list-column needs a Parquet output (CSV has no list columns)")
        pacsv.write_csv(t, args.out)
    elif args.out.endswith(".parquet"):
        pq.write_table(t, args.out)
    else:
        parser.error("--out must end in .parquet or .csv")
    print(f"wrote {args.rows} rows ({int(y.sum())} fraud) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
