"""Time series (CSV or Parquet): a time column and one or more numeric channels, on a regular grid.

The rule (`read_series`; pipeline/series.py runs the jobs, detectors/series.py the detector):
- the time column is the one named with `--time-column`, else the first column named timestamp, time, date or
  datetime, else the first column whose every value parses as a date and time;
- every other column is a channel (leave some out with `--exclude-columns`, as for tables): numbers, with empty
  cells allowed (a missing point);
- the sampling step is the most common gap between consecutive timestamps; a gap of k steps is k - 1 missing
  timestamps, put on the grid as missing points (NaN, masked by the detector: never imputed); a gap that is not a
  whole number of steps is irregular sampling, an error naming its rows;
- errors, one line each naming the column or row: an unparseable, duplicated or backwards timestamp, a text value
  in a channel, a constant channel, no numeric channel, more grid points missing than present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .tables import _first, read_table

TIME_NAMES = ("timestamp", "time", "date", "datetime", "ts")
MAX_MISSING = 0.5  # more missing grid points than this share: the sampling is not regular, it is sparse


@dataclass
class Series:
    """A series on its regular grid: `values` (T, D) float64 with NaN where a point is missing."""

    time: pd.DatetimeIndex  # (T,) the grid, every step from the first timestamp to the last
    values: np.ndarray  # (T, D)
    channels: list[str]
    time_column: str
    step: pd.Timedelta
    inserted: int  # grid points that had no row in the file (missing timestamps)
    rows: np.ndarray  # (n_rows,) each file row's position on the grid

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, index=self.time, columns=self.channels)


def _row(i: int) -> str:
    return f"data row {i + 1} (line {i + 2})"


def find_time_column(frame: pd.DataFrame, name: str | None = None) -> str:
    """The time column: `name`, else a column named like one, else the first that parses as dates."""
    if name is not None:
        if name not in frame.columns:
            raise InvalidInput(f"--time-column {name!r} is not a column; the columns are "
                               f"{', '.join(map(str, frame.columns))}")
        return name
    for c in frame.columns:
        if str(c).strip().lower() in TIME_NAMES or pd.api.types.is_datetime64_any_dtype(frame[c]):
            return c
    for c in frame.columns:
        col = frame[c]
        text = col.dtype == object or pd.api.types.is_string_dtype(col)
        if text and pd.to_datetime(col, errors="coerce", format="mixed").notna().all():
            return c
    raise InvalidInput("no time column found (a column of dates and times, or one named timestamp or time); "
                       "name it with --time-column")


def parse_times(col: pd.Series, name: str) -> pd.DatetimeIndex:
    """The time column as datetimes; an unparseable value is an error naming its row."""
    if pd.api.types.is_datetime64_any_dtype(col):
        t = pd.DatetimeIndex(col)
    elif pd.api.types.is_numeric_dtype(col):  # seconds since the epoch
        t = pd.DatetimeIndex(pd.to_datetime(col, unit="s", errors="coerce"))
    else:
        t = pd.DatetimeIndex(pd.to_datetime(col, errors="coerce", format="mixed"))
    bad = np.asarray(t.isna())
    if bad.any():
        raise InvalidInput(f"time column {name!r} holds {col[bad].iloc[0]!r} in {_first(bad)}, which is not a "
                           "date and time")
    t = t.tz_convert(None) if t.tz is not None else t
    return t.as_unit("ns")  # asi8 counts nanoseconds whatever resolution the parser chose


def channel_values(frame: pd.DataFrame, channels: list[str]) -> np.ndarray:
    """(n_rows, D) float64 of the channel columns, NaN for empty cells; text is an error naming its cell."""
    out = np.empty((len(frame), len(channels)))
    for j, c in enumerate(channels):
        col = frame[c]
        if pd.api.types.is_bool_dtype(col) or not (pd.api.types.is_numeric_dtype(col) or col.dtype == object
                                                   or pd.api.types.is_string_dtype(col)):
            raise InvalidInput(f"column {c!r} is {col.dtype}, not numbers; leave it out with --exclude-columns {c}")
        values = pd.to_numeric(col, errors="coerce")
        text = values.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if text.any():
            raise InvalidInput(f"column {c!r} holds text {col[text].iloc[0]!r} in {_first(text)}; a channel holds "
                               f"numbers (leave the column out with --exclude-columns {c})")
        out[:, j] = values.to_numpy(np.float64)
    if np.isinf(out).any():
        i, j = np.argwhere(np.isinf(out))[0]
        raise InvalidInput(f"column {channels[j]!r} has an infinite value in {_row(int(i))}")
    return out


def check_channels(values: np.ndarray, channels: list[str]) -> None:
    """A channel that is all missing or constant carries nothing to learn: an error naming it."""
    for j, c in enumerate(channels):
        v = values[:, j][~np.isnan(values[:, j])]
        if v.size == 0:
            raise InvalidInput(f"channel {c!r} has no values; leave it out with --exclude-columns {c}")
        if np.ptp(v) == 0:
            raise InvalidInput(f"channel {c!r} is constant ({v[0]:g} throughout); leave it out with "
                               f"--exclude-columns {c}")


def to_grid(t: pd.DatetimeIndex, name: str) -> tuple[pd.Timedelta, np.ndarray]:
    """The sampling step and each row's position on the regular grid; the errors of the module's rule."""
    if len(t) < 2:
        raise InvalidInput(f"time column {name!r} has {len(t)} row; a series needs at least two points")
    gaps = np.diff(t.asi8)
    dup = np.flatnonzero(gaps == 0)
    if dup.size:
        i = int(dup[0])
        raise InvalidInput(f"time column {name!r} repeats {t[i]} in {_row(i)} and {_row(i + 1)}; one row a "
                           "timestamp")
    back = np.flatnonzero(gaps < 0)
    if back.size:
        i = int(back[0]) + 1
        raise InvalidInput(f"time column {name!r} goes back in time in {_row(i)} ({t[i]} after {t[i - 1]}); "
                           "sort the rows by time")
    values, counts = np.unique(gaps, return_counts=True)
    step = int(values[np.argmax(counts)])
    irregular = np.flatnonzero(gaps % step != 0)
    if irregular.size:
        rows = ", ".join(str(int(i) + 2) for i in irregular[:3]) + (" ..." if irregular.size > 3 else "")
        raise InvalidInput(f"time column {name!r} is irregularly sampled: {irregular.size} gap(s) are not a whole "
                           f"number of its {pd.Timedelta(step, 'ns')} step, first before data row(s) {rows}; "
                           "resample the series to a regular step first")
    pos = np.concatenate([[0], np.cumsum(gaps // step)])
    grid = int(pos[-1]) + 1
    if grid - len(t) > MAX_MISSING * grid:
        raise InvalidInput(f"time column {name!r}: {grid - len(t)} of {grid} points of its "
                           f"{pd.Timedelta(step, 'ns')} grid are missing; resample the series to a regular step "
                           "first")
    return pd.Timedelta(step, "ns"), pos


def from_frame(frame: pd.DataFrame, time_column: str | None = None, exclude=()) -> Series:
    """A DataFrame under the module's rule, as a Series on its grid."""
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise InvalidInput(f"--exclude-columns names {unknown[0]!r}, which the series does not have; its columns "
                           f"are {', '.join(map(str, frame.columns))}")
    tcol = find_time_column(frame, time_column)
    channels = [str(c) for c in frame.columns if c != tcol and c not in exclude]
    if not channels:
        raise InvalidInput(f"the series has no numeric column besides its time column {tcol!r}; "
                           "check --exclude-columns")
    t = parse_times(frame[tcol], str(tcol))
    values = channel_values(frame, channels)
    step, pos = to_grid(t, str(tcol))
    grid = np.full((int(pos[-1]) + 1, len(channels)), np.nan)
    grid[pos] = values
    check_channels(grid, channels)
    time = pd.date_range(t[0], periods=len(grid), freq=step)
    return Series(time, grid, channels, str(tcol), step, len(grid) - len(t), pos)


def read_series(path: str | Path, time_column: str | None = None, exclude=()) -> Series:
    """A CSV or Parquet file as a Series; a one-line error for each bad input of the module's rule."""
    return from_frame(read_table(path), time_column, exclude)


def check_array(values: np.ndarray) -> None:
    """A (T, D) array given to AnomalyVAE(input_kind="series"): the channel checks of a file."""
    check_channels(values, [f"x{j}" for j in range(values.shape[1])])
