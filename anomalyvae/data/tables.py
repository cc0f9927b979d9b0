"""Tables (CSV or Parquet) as feature vectors: reading them, and the encoding rule (pipeline/tables.py runs the jobs).

The rule, fitted on the normal training table and saved with the model (model.json, "table"):
- numeric and boolean columns are features as they are;
- a text (or categorical) column with at most MAX_CATEGORIES distinct values is one-hot encoded, one feature
  per value seen in training (named `column=value`); a value not seen in training sets none of them;
- any other text column is an error naming it: drop it with --exclude-columns (ids, free text, dates);
- a constant column is kept: its scale is floored at the median spread of the columns (estimator.PREPROCESSING),
  so a row that leaves the constant scores by how far it leaves it;
- an empty cell, NaN or an infinite value is an error naming the column and the first such row.
Columns are matched by name, in any order; a training column missing at scoring time is an error naming it,
and extra columns (an id, the label) are ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, InvalidInput

MAX_CATEGORIES = 20  # a text column with more distinct values is not a category (ids, names, free text)
SUFFIXES = (".csv", ".parquet", ".pq")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; a missing, unreadable or row-less file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; pass a .csv or .parquet file")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"table {path}: unknown format {path.suffix or '(no suffix)'}; use .csv or .parquet")
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty; it needs a header line and rows") from None
    except Exception as e:  # pandas and pyarrow raise many kinds
        raise DataError(f"table {path} could not be read ({str(e).splitlines()[0][:160]})") from None
    if len(frame) == 0:
        raise DataError(f"table {path} has a header but no rows; add rows of data")
    return frame


@dataclass
class TableEncoder:
    """The encoding rule fitted on one table: which columns, in which order, and each category's values."""

    columns: list[str]  # the table's columns the model uses, in training order
    categories: dict[str, list[str]] = field(default_factory=dict)  # one-hot columns and their values
    types: dict[str, str] = field(default_factory=dict)  # each column's type as MLflow names it (its signature)

    @classmethod
    def fit(cls, frame: pd.DataFrame, exclude: list[str] | tuple[str, ...] = ()) -> "TableEncoder":
        unknown = [c for c in exclude if c not in frame.columns]
        if unknown:
            raise InvalidInput(f"--exclude-columns names {unknown[0]!r}, which the table does not have; "
                               f"its columns are {', '.join(map(str, frame.columns))}")
        columns, categories, types = [], {}, {}
        for name in frame.columns:
            if name in exclude:
                continue
            col = frame[name]
            if _numeric(col):
                columns.append(str(name))
                types[str(name)] = ("boolean" if pd.api.types.is_bool_dtype(col) else
                                    "long" if pd.api.types.is_integer_dtype(col) else "double")
                continue
            values = col.dropna().astype(str).unique()
            if len(values) > MAX_CATEGORIES:
                raise InvalidInput(f"column {name!r} is text with {len(values)} distinct values (at most "
                                   f"{MAX_CATEGORIES} are one-hot encoded); leave it out with --exclude-columns {name}")
            columns.append(str(name))
            categories[str(name)] = sorted(values)
            types[str(name)] = "string"
        if not columns:
            raise InvalidInput("the table has no columns left to learn from; check --exclude-columns")
        return cls(columns, categories, types)

    def feature_names(self) -> list[str]:
        names = []
        for c in self.columns:
            names += [f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c]
        return names

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's features of `frame`, by column name; missing columns and bad cells are errors."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InvalidInput(f"column {missing[0]!r} is missing; the model was trained on "
                               f"{', '.join(self.columns)}")
        parts = []
        for c in self.columns:
            col = frame[c]
            if col.isna().any():
                raise InvalidInput(f"column {c!r} has an empty cell or NaN in {_first(col.isna())}; "
                                   "fill or drop such rows first")
            if c in self.categories:
                text = col.astype(str)
                parts += [(text == v).astype(np.float32).rename(f"{c}={v}") for v in self.categories[c]]
                continue
            if not _numeric(col):
                raise InvalidInput(f"column {c!r} holds text where the model was trained on numbers "
                                   f"(e.g. {col[~col.map(_is_number)].iloc[0]!r})")
            values = col.astype(np.float64)
            if not np.isfinite(values).all():
                raise InvalidInput(f"column {c!r} has an infinite value in {_first(~np.isfinite(values))}; "
                                   "replace or drop such rows first")
            parts.append(values.rename(c))
        return pd.concat(parts, axis=1).set_axis(self.feature_names(), axis=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TableEncoder":
        return cls(list(d["columns"]), {k: list(v) for k, v in d.get("categories", {}).items()},
                   dict(d.get("types", {})))


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _first(mask) -> str:
    """The first flagged row, as score's CSV counts rows (data rows from 1) and as the file's line (the header is
    line 1)."""
    i = int(np.flatnonzero(np.asarray(mask))[0])
    return f"data row {i + 1} (line {i + 2})"


def labels(col: pd.Series, name: str) -> np.ndarray:
    """A label column as booleans: 1 / 0, true / false, yes / no, anomaly / normal."""
    if _numeric(col) and not col.isna().any():
        return col.to_numpy().astype(float) != 0
    text = col.astype(str).str.strip().str.lower()
    truth = {"1": True, "true": True, "yes": True, "anomaly": True, "0": False, "false": False, "no": False,
             "normal": False}
    bad = ~text.isin(list(truth))
    if bad.any():
        raise InvalidInput(f"column {name!r} holds {col[bad].iloc[0]!r} in {_first(bad)}; labels are 1/0, "
                           "true/false, yes/no or anomaly/normal")
    return text.map(truth).to_numpy(bool)
