"""Rows of the command's input files, read a range at a time: ``.npy``, ``.parquet``, ``.csv``.

Every reader is a pure function of (path, columns, row range), so that a chunk can be
read anywhere (a Dask worker included) and memory is bounded by the range, never by
the file:

* ``.npy``: ``np.load(mmap_mode="r")``, the range sliced and copied (the mapping is
  dropped with the chunk, so the file's pages do not accumulate in the process).
* ``.parquet``: pyarrow (``pip install xentropy[parquet]``), record batches of the row
  groups that overlap the range.
* ``.csv``: a header line of column names, then one row per line (no blank lines, no
  quoted newlines); the byte offset of each chunk's first row is found once by a scan
  for newlines, and ``np.loadtxt`` parses the range (as floats; a groups column as
  integers or strings).

Columns of tabular files: one column (a number per row; or a list column, a row of C
numbers), or several scalar columns ``p0,p1,p2`` stacked into an N×C matrix. A file
with a single column needs no ``--*-column``. Rows are numbered from 0 (the header of
a CSV file is not a row).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

SUFFIXES = (".npy", ".parquet", ".csv")
_CSV_BLOCK = 1 << 24


class BadInput(Exception):
    """A file that cannot be evaluated, with where: the file, the column and the row."""

    def __init__(self, file: str, message: str, *, column: str | None = None,
                 row: int | None = None) -> None:
        super().__init__(message)
        self.file, self.message, self.column, self.row = file, message, column, row

    def __reduce__(self) -> tuple[Any, ...]:  # Dask worker processes send it back
        return _bad_input, (self.file, self.message, self.column, self.row)

    def __str__(self) -> str:
        where = self.file
        if self.column is not None:
            where += f", column {self.column}"
        if self.row is not None:
            where += f", row {self.row}"
        return f"{where}: {self.message}"


def _bad_input(file: str, message: str, column: str | None, row: int | None) -> BadInput:
    return BadInput(file, message, column=column, row=row)


@dataclass(frozen=True)
class Layout:
    """What the plan needs of one file: its rows, and for CSV the byte offset of the first
    row of every chunk (``offsets[k]``: row ``k * chunk_rows``)."""

    n_rows: int
    offsets: tuple[int, ...] = ()


def expand(pattern: str) -> tuple[str, ...]:
    """The files of an input: the file itself, the files of a directory, or a glob's
    matches, in sorted order (one partition each)."""
    if os.path.isdir(pattern):
        found = sorted(
            os.path.join(pattern, n) for n in os.listdir(pattern) if n.endswith(SUFFIXES)
        )
    elif os.path.exists(pattern):
        return (pattern,)
    else:
        found = sorted(p for p in glob.glob(pattern) if not os.path.isdir(p))
    if not found:
        raise BadInput(pattern, "no such file, and no .npy, .parquet or .csv files match")
    return tuple(found)


def _suffix(path: str) -> str:
    for suffix in SUFFIXES:
        if path.endswith(suffix):
            return suffix
    raise BadInput(path, "expected a .npy, .parquet or .csv file")


def layout(path: str, columns: tuple[str, ...] | None, chunk_rows: int) -> Layout:
    """The rows of ``path`` (and CSV offsets); checks that the columns exist."""
    suffix = _suffix(path)
    try:
        if suffix == ".npy":
            if columns:
                raise BadInput(path, "a .npy file has no columns: leave out --*-column")
            arr = np.load(path, mmap_mode="r")
            if arr.ndim not in (1, 2):
                raise BadInput(path, f"expected a 1-D or 2-D array, got shape {arr.shape}")
            return Layout(int(arr.shape[0]))
        if suffix == ".parquet":
            pq = _pyarrow_parquet()
            meta = pq.ParquetFile(path)
            _select(path, list(meta.schema_arrow.names), columns)
            return Layout(int(meta.metadata.num_rows))
        names = _csv_header(path)
        _select(path, names, columns)
        return _csv_layout(path, chunk_rows)
    except BadInput:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise BadInput(path, f"unreadable: {error}") from None
    except Exception as error:  # pyarrow's own errors (ArrowInvalid, ...)
        raise BadInput(path, f"unreadable: {type(error).__name__}: {error}") from None


def width(path: str, columns: tuple[str, ...] | None) -> int:
    """Numbers per row (0 for one number per row, shape (N,)), from the first row."""
    if _suffix(path) == ".csv":
        chosen = _select(path, _csv_header(path), columns)
        return 0 if len(chosen) == 1 else len(chosen)
    head = read(path, columns, 0, 1)
    return 0 if head.ndim == 1 else int(head.shape[1])


def read(path: str, columns: tuple[str, ...] | None, start: int, stop: int,
         offset: int = 0, dtype: Any = None) -> np.ndarray:
    """Rows ``[start, stop)`` of ``path``: shape (n,) or (n, C), as stored (float or int)
    or as ``dtype``; ``offset``: a CSV file's byte offset of row ``start``."""
    suffix = _suffix(path)
    try:
        if suffix == ".npy":
            mapped = np.load(path, mmap_mode="r")
            # One copy, converted on the way (float32 pages -> float64, no float32 copy).
            out = np.array(mapped[start:stop], dtype=dtype)
            del mapped
            return out
        if suffix == ".parquet":
            return np.asarray(_parquet_rows(path, columns, start, stop), dtype=dtype)
        # Integers and strings (a groups column) are parsed as such, not through floats.
        if dtype is not None and np.dtype(dtype).kind in "iuU":
            return _csv_rows(path, columns, start, stop, offset, dtype)
        return np.asarray(_csv_rows(path, columns, start, stop, offset), dtype=dtype)
    except BadInput:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise BadInput(path, f"unreadable: {error}") from None
    except Exception as error:
        raise BadInput(path, f"unreadable: {type(error).__name__}: {error}") from None


def _select(path: str, names: list[str], columns: tuple[str, ...] | None) -> list[str]:
    if not columns:
        if len(names) != 1:
            raise BadInput(path, f"the file has columns {', '.join(names)}: choose with "
                           "--*-column (one, or several separated by commas)")
        return names
    for name in columns:
        if name not in names:
            raise BadInput(path, f"no such column (the file has {', '.join(names)})",
                           column=name)
    return list(columns)


# --------------------------------------------------------------------------- parquet


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise BadInput("(parquet)", "reading .parquet needs pyarrow: pip install "
                       "'xentropy[parquet]'") from None
    return pq


def _parquet_rows(path: str, columns: tuple[str, ...] | None, start: int,
                  stop: int) -> np.ndarray:
    pq = _pyarrow_parquet()
    f = pq.ParquetFile(path)
    names = _select(path, list(f.schema_arrow.names), columns)
    pieces = []
    first = 0
    for group in range(f.metadata.num_row_groups):
        size = f.metadata.row_group(group).num_rows
        if first + size <= start or first >= stop:
            first += size
            continue
        pos = first
        for batch in f.iter_batches(batch_size=1 << 16, row_groups=[group], columns=names):
            a, b = max(start, pos), min(stop, pos + batch.num_rows)
            if a < b:
                pieces.append(_batch_array(path, batch.slice(a - pos, b - a), names, a))
            pos += batch.num_rows
            if pos >= stop:
                break
        first += size
    if not pieces:
        return np.zeros(0)
    return np.concatenate(pieces)


def _batch_array(path: str, batch: Any, names: list[str], row0: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for name in names:
        col = batch.column(name)
        if col.null_count:
            i = int(pc.index(pc.is_null(col), True).as_py())
            raise BadInput(path, "expected a number, got null", column=name, row=row0 + i)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or \
                pa.types.is_fixed_size_list(col.type):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if len(names) > 1:
                raise BadInput(path, "a list column cannot be combined with others",
                               column=name)
            if lengths.size and (lengths != lengths[0]).any():
                i = int(np.flatnonzero(lengths != lengths[0])[0])
                raise BadInput(path, f"expected {lengths[0]} numbers (as row {row0}), got "
                               f"{lengths[i]}", column=name, row=row0 + i)
            values = col.flatten().to_numpy(zero_copy_only=False)
            return values.reshape(len(col), int(lengths[0]) if lengths.size else 0)
        arrays.append(col.to_numpy(zero_copy_only=False))
    return arrays[0] if len(arrays) == 1 else np.column_stack(arrays)


# --------------------------------------------------------------------------- csv


def _csv_header(path: str) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        line = f.readline()
    names = [n.strip().strip('"') for n in line.rstrip("\r\n").split(",")]
    if not line or not any(names):
        raise BadInput(path, "expected a header line of column names")
    return names


def _csv_layout(path: str, chunk_rows: int) -> Layout:
    """Rows after the header, and the byte offset of rows 0, chunk_rows, 2 chunk_rows, ..."""
    offsets: list[int] = []
    newlines = 0  # seen so far; the k-th (0-based) ends line k (line 0: the header)
    last = b""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        base = 0
        while block := f.read(_CSV_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            # Row r starts after newline r: the starts of the wanted rows in this block.
            rows = np.arange(newlines, newlines + ends.shape[0])
            wanted = rows % chunk_rows == 0
            offsets.extend((base + ends[wanted] + 1).tolist())
            newlines += ends.shape[0]
            base += len(block)
            last = block[-1:]
    n_rows = max(newlines - 1, 0) + (1 if newlines and last != b"\n" else 0)
    offsets = [o for o in offsets if o < size]  # no row starts at the end of the file
    return Layout(n_rows, tuple(offsets[: (n_rows + chunk_rows - 1) // chunk_rows]))


_LOADTXT_WHERE = re.compile(r"at row (\d+), column (\d+)")


def _csv_rows(path: str, columns: tuple[str, ...] | None, start: int, stop: int,
              offset: int, parse: Any = np.float64) -> np.ndarray:
    names = _csv_header(path)
    chosen = _select(path, names, columns)
    usecols = [names.index(n) for n in chosen]
    with open(path, encoding="utf-8", newline="") as f:
        f.seek(offset)
        try:
            out = np.loadtxt(f, delimiter=",", usecols=usecols, max_rows=stop - start,
                             dtype=parse, ndmin=2, comments=None)
        except ValueError as error:
            found = _LOADTXT_WHERE.search(str(error))
            if found is None:
                raise BadInput(path, str(error), row=None) from None
            # numpy counts rows from 0 (from the offset) and the file's columns from 1.
            row, col = int(found.group(1)), int(found.group(2))
            message = str(error)[: found.start()].strip().rstrip(",")
            column = names[col - 1] if 0 < col <= len(names) else None
            raise BadInput(path, message, column=column, row=start + row) from None
    if out.shape[0] != stop - start:
        raise BadInput(path, f"expected {stop - start} rows from row {start}, got "
                       f"{out.shape[0]}", row=start + out.shape[0])
    return out[:, 0] if len(chosen) == 1 else out
