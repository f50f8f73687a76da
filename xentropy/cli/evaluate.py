"""``xentropy evaluate``: losses, calibration and divergences of whole datasets, from files.

The rows are read a chunk at a time (``--chunk-rows``); each chunk gives one state per
report (:func:`chunk_states`, a pure function of the file specs, the row range and the
options), and the states merge as they come, so memory is bounded by the chunk, not by
the number of rows. The merged states finalize to the results that ``POST /v1/merge``
answers for the same chunks sent as requests with ``"return_state": true``.

Option flags are made from the library's constraint tables (``CALIBRATION_PARAMS``,
``CATEGORICAL_PARAMS``, ``BINARY_PARAMS``, ``DIVERGENCE_PARAMS``): an option added to a
table is a flag here. ``--output`` writes one JSON object keyed by report name whose
values are, byte for byte, ``POST /v1/merge``'s answers (orjson, as the service writes).
Exit codes: 0 done, 2 bad input (the file, the column and the row named).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import xentropy
from xentropy._divergences import DIVERGENCE_PARAMS
from xentropy._validation import InputError, Param
from xentropy.calibration import CALIBRATION_PARAMS, calibration_state_of
from xentropy.cli.sources import BadInput, Layout, expand, layout, read, width
from xentropy.options import BINARY_PARAMS, CATEGORICAL_PARAMS
from xentropy.states import State, merged_json

REPORTS = ("losses", "calibration", "divergences")
#: The default chunk: this many numbers of predictions (300 000 rows of 10 classes, 24 MB
#: of float64). Measured on 10^6 × 10: as fast as chunks of 4·10^5 rows and 1.5 to 2×
#: faster than chunks of 10^6 rows, whose temporaries no longer fit the allocator's
#: reusable blocks (each chunk maps fresh pages), at a third of their memory.
DEFAULT_CHUNK_NUMBERS = 3_000_000
#: Numbers per computation inside a chunk: the kernels hold several temporaries of their
#: input's size, so a chunk is computed in blocks of this many numbers and their states
#: merged, and the peak memory is the chunk's float64 copy plus a block's temporaries.
BLOCK_NUMBERS = 1_000_000
#: Chunk states are merged this many at a time (one flat merge for up to 64 chunks: the
#: same as one ``/v1/merge`` of their 64 states, so the answer is the same to the bit).
FAN_IN = 64
#: Table options that are not flags: answered per sample, refused with a state, or files.
_NOT_FLAGS = frozenset({"return_state", "return_gradient", "sample_weights", "mask",
                        "fit_temperature"})
#: The inputs (files), with the library argument each one is.
INPUTS = ("probabilities", "labels", "sample_weights", "targets", "groups")
#: Groups printed in the summary table (all of them are in --output).
SHOWN_GROUPS = 20


def _tables(report: str, binary: bool) -> dict[str, Param]:
    if report == "losses":
        return BINARY_PARAMS if binary else CATEGORICAL_PARAMS
    return CALIBRATION_PARAMS if report == "calibration" else DIVERGENCE_PARAMS


_ALL_TABLES: dict[str, tuple[dict[str, Param], ...]] = {
    "losses": (CATEGORICAL_PARAMS, BINARY_PARAMS),
    "calibration": (CALIBRATION_PARAMS,),
    "divergences": (DIVERGENCE_PARAMS,),
}


# --------------------------------------------------------------------------- the parser


def _flag_type(param: Param) -> dict[str, Any]:
    """argparse's reading of a table row, by its kind (a kind added later reads as text
    and the library checks it)."""
    if param.kind == "integer":
        return {"type": int, "metavar": "INT"}
    if param.kind == "number":
        return {"type": float, "metavar": "X"}
    if param.kind == "boolean":
        return {"action": argparse.BooleanOptionalAction}
    if param.kind == "choice":
        return {"choices": param.choices}
    if param.kind == "array":
        return {"type": _numbers, "metavar": "X[,X...]"}
    if param.kind == "choices":  # several of the choices, each once
        return {"type": _names(param.choices), "metavar": ",".join(param.choices)}
    if param.kind == "object":  # sub-options: NAME=VALUE,... or a JSON object
        flag = {"nargs": "?", "const": True} if getattr(param, "flag", False) else {}
        return {"type": _object, "metavar": "NAME=VALUE[,...]", **flag}
    return {"type": str}


def _names(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        for n in names:
            if n not in choices:
                raise argparse.ArgumentTypeError(
                    f"expected some of {', '.join(choices)}, got {n!r}")
        return names
    return parse


def _object(text: str) -> dict[str, Any]:
    """``n_resamples=200,seed=3`` (numbers read as JSON numbers) or ``{"seed": 3}``."""
    import json

    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected a JSON object: {error}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("expected a JSON object")
        return value
    out: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw.strip()
    return out


def _numbers(text: str) -> Any:
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def _help(text: str, reports: list[str]) -> str:
    return f"({', '.join(reports)}) " + text.replace("`", "").replace("%", "%%")


def option_flags() -> dict[str, tuple[Param, list[str]]]:
    """Every table option that is a flag: name -> (its row, the reports that take it)."""
    flags: dict[str, tuple[Param, list[str]]] = {}
    for report, tables in _ALL_TABLES.items():
        for table in tables:
            for name, param in table.items():
                if name in _NOT_FLAGS:
                    continue
                _, reports = flags.setdefault(name, (param, []))
                if report not in reports:
                    reports.append(report)
    return flags


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on an argparse subparsers object (the ``xentropy`` entry
    point's); the parsed arguments run with :func:`run`."""
    p = commands.add_parser(
        "evaluate", help="evaluate predictions in files (chunked, mergeable)",
        description="Losses, calibration and divergences of predictions in files, a chunk of "
        "rows at a time; --output writes what POST /v1/merge answers.",
    )
    configure(p)
    return p


def configure(p: argparse.ArgumentParser) -> None:
    files = p.add_argument_group("inputs (a .npy, .parquet or .csv file, a directory or a glob)")
    files.add_argument("--probabilities", metavar="FILE",
                       help="N (binary: probability of class 1) or N×C predictions")
    files.add_argument("--logits", nargs="?", const=True, default=None, metavar="FILE",
                       help="the --probabilities file holds logits; or --logits FILE in "
                       "place of --probabilities")
    files.add_argument("--labels", required=True, metavar="FILE", help="N integer labels")
    files.add_argument("--sample-weights", metavar="FILE", help="N weights >= 0")
    files.add_argument("--targets", metavar="FILE",
                       help="N×C reference distributions p for the divergences report "
                       "(KL(p‖q), ... with q the predictions)")
    files.add_argument("--groups", metavar="FILE",
                       help="N group values (integers or strings, e.g. the day of each row): "
                       "the calibration report also gives per_group, each group's report")
    for name in INPUTS:
        files.add_argument(f"--{name.replace('_', '-')}-column", metavar="COL[,COL...]",
                           help=f"the column(s) of the {name} in a tabular file")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--report", default=None, metavar="LIST",
                           help="comma-separated, of losses, calibration, divergences "
                           "(default: losses,calibration; with --targets also divergences)")
    run_group.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                           help=f"rows per chunk (default: {DEFAULT_CHUNK_NUMBERS:_} numbers "
                           "of predictions, e.g. 300_000 rows of 10 classes): memory is "
                           "bounded by the chunk")
    run_group.add_argument("--scheduler", default=None, metavar="SPEC",
                           help="threads, processes or tcp://HOST:PORT: the chunks as a Dask "
                           "graph (pip install 'xentropy[dask]')")
    run_group.add_argument("--output", metavar="FILE",
                           help="write the JSON that POST /v1/merge answers, by report")
    run_group.add_argument("--diagram", metavar="FILE",
                           help="write the reliability diagram (SVG) of the calibration")
    run_group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                           help="a progress bar on stderr (default: when it is a terminal)")
    opts = p.add_argument_group("options (from the library's option tables)")
    for name, (param, reports) in option_flags().items():
        opts.add_argument(f"--{name.replace('_', '-')}", dest=f"opt_{name}", default=None,
                          help=_help(param.doc, reports), **_flag_type(param))


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class Input:
    """One input of the command: its files (partitions) and columns."""

    name: str
    files: tuple[str, ...]
    columns: tuple[str, ...] | None
    #: How a CSV column is parsed, if not as floats: the groups, as int64 or str.
    parse: Any = None


@dataclass(frozen=True)
class Job:
    """Everything a chunk's computation needs (picklable: it goes to Dask workers)."""

    inputs: dict[str, Input]
    logits: bool
    binary: bool
    reports: tuple[str, ...]
    options: dict[str, dict[str, Any]]  # report -> the options given


@dataclass(frozen=True)
class Chunk:
    """Rows [start, stop) of partition ``part``; ``offsets``: each input's CSV byte
    offset of row ``start`` (0 for other formats)."""

    part: int
    start: int
    stop: int
    offsets: dict[str, int]
    #: The number of the chunk's first row in the run (over all the files): with
    #: --confidence-level, the block of rows starting at run row r draws the bootstrap
    #: stream s + r (s: --bootstrap stream=s, default 0), as merged states need distinct
    #: streams.
    first_row: int = 0


def chunk_states(job: Job, chunk: Chunk) -> dict[str, State]:
    """The state of each report over one chunk: a pure function of its arguments.

    Raises:
      BadInput: naming the file, the column and the row (of the file) of a bad value.
    """
    # Floats are read as float64, which the kernels compute in (so they copy nothing).
    data = {
        name: read(inp.files[chunk.part], inp.columns, chunk.start, chunk.stop,
                   chunk.offsets.get(name, 0), _DTYPES.get(name, inp.parse))
        for name, inp in job.inputs.items()
    }
    if "groups" in data:
        _check_groups(data["groups"], job.inputs["groups"], chunk)
    n_rows = len(next(iter(data.values())))
    width = max(int(np.prod(v.shape[1:])) for v in data.values())
    step = max(1, BLOCK_NUMBERS // width)
    states = {}
    for report in job.reports:
        parts = []
        for start in range(0, max(n_rows, 1), step):
            block = {name: v[start:start + step] for name, v in data.items()}
            try:
                parts.append(_REPORT[report](job, block, chunk.first_row + start))
            except InputError as error:
                raise _located(error, job, chunk, start) from None
        states[report] = parts[0] if len(parts) == 1 else xentropy.merge(parts)
    return states


def _losses(job: Job, data: dict[str, np.ndarray], first_row: int) -> State:
    x, y = data["probabilities"], data["labels"]
    options = dict(job.options["losses"], return_state=True)
    w = data.get("sample_weights")
    if w is not None:
        options["sample_weights"] = w
    if job.binary:
        fn: Callable[..., xentropy.LossResult] = (
            xentropy.sigmoid_binary_cross_entropy if job.logits else xentropy.binary_cross_entropy)
        targets = y.astype(np.float64)
        if not ((targets == 0) | (targets == 1)).all():
            i = int(np.flatnonzero((targets != 0) & (targets != 1))[0])
            raise InputError("labels", f"expected a label 0 or 1 with binary predictions, "
                             f"got {y[i]}", position=(i,), kind="out_of_range")
        return xentropy.state(fn(x, targets, **options))
    multi: Callable[..., xentropy.LossResult] = (
        xentropy.softmax_cross_entropy_with_integer_labels if job.logits
        else xentropy.categorical_cross_entropy_with_integer_labels)
    return xentropy.state(multi(x, y, **options))


def _calibration(job: Job, data: dict[str, np.ndarray], first_row: int) -> State:
    x = data["probabilities"]
    given: dict[str, Any] = {"logits": x} if job.logits else {"probabilities": x}
    options = dict(job.options["calibration"])
    if options.get("confidence_level") is not None:
        bootstrap = dict(options.get("bootstrap") or {})
        stream = bootstrap.get("stream", 0)
        if isinstance(stream, int) and not isinstance(stream, bool):  # else refused below
            bootstrap["stream"] = stream + first_row
        options["bootstrap"] = bootstrap
    # The state alone: the chunk's report (bins, quantile ACE, per-class ECE) would be
    # thrown away. The same state as calibration_report(..., return_state=True).
    return calibration_state_of(labels=data["labels"], sample_weights=data.get("sample_weights"),
                                groups=data.get("groups"), **given, **options)


def _check_groups(values: np.ndarray, inp: Input, chunk: Chunk) -> None:
    """Group values are integers or non-empty strings; a float column (NaN for a missing
    value, or numbers that merely look like integers) is refused at its first bad row."""
    where = {"column": inp.columns[0] if inp.columns else None}
    file = inp.files[chunk.part]
    kind = values.dtype.kind
    if kind in "iu":
        return
    if kind in "UO":
        empty = np.flatnonzero(values == "")
        if empty.size:
            raise BadInput(file, "expected a group, got an empty value (a missing group?)",
                           row=chunk.start + int(empty[0]), **where)
        return
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            raise BadInput(file, f"expected a group (an integer or a string), got "
                           f"{float(values[bad[0]])!r}", row=chunk.start + int(bad[0]), **where)
    raise BadInput(file, f"expected integer or string groups, got {values.dtype} values "
                   "(store them as integers or strings)", row=chunk.start, **where)


def _divergences(job: Job, data: dict[str, np.ndarray], first_row: int) -> State:
    q: dict[str, Any] = {"q_logits" if job.logits else "q": data["probabilities"]}
    return xentropy.state(xentropy.divergences(
        data["targets"], return_state=True, **q, **job.options["divergences"]
    ))


_FLOAT64 = np.dtype(np.float64)
#: How inputs are read: float64, labels as stored (the library checks them), groups as
#: stored or as their CSV column's ``Input.parse``.
_DTYPES: dict[str, Any] = {"probabilities": _FLOAT64, "sample_weights": _FLOAT64,
                           "targets": _FLOAT64, "labels": None}
_REPORT: dict[str, Callable[[Job, dict[str, np.ndarray], int], State]] = {
    "losses": _losses, "calibration": _calibration, "divergences": _divergences,
}
#: The library's argument names, by input.
_FIELDS = {"probabilities": "probabilities", "logits": "probabilities", "q": "probabilities",
           "q_logits": "probabilities", "labels": "labels", "targets": "labels",
           "sample_weights": "sample_weights", "p": "targets", "groups": "groups"}


def _located(error: InputError, job: Job, chunk: Chunk, block: int = 0) -> Exception:
    """The library's error, at the file row (its positions are relative to the block that
    starts at row ``block`` of the chunk)."""
    name = _FIELDS.get(error.field)  # binary losses: the labels are their targets
    if name is None or name not in job.inputs:
        return BadInput(f"--{error.field.replace('_', '-')}", error.message)
    inp = job.inputs[name]
    at = [int(p) for p in error.position if isinstance(p, int)]  # (row, column) of an input
    column = None
    if len(at) > 1 and inp.columns and len(inp.columns) > 1:
        column = inp.columns[at[1]]
    elif inp.columns:
        column = inp.columns[0] + (f"[{at[1]}]" if len(at) > 1 else "")
    elif len(at) > 1:
        column = str(at[1])
    row = chunk.start + block + at[0] if at else None
    return BadInput(inp.files[chunk.part], error.message, column=column, row=row)


# --------------------------------------------------------------------------- planning


def _columns(text: str | None) -> tuple[str, ...] | None:
    return tuple(c.strip() for c in text.split(",")) if text else None


def plan(args: argparse.Namespace) -> tuple[Job, list[Chunk]]:
    """The job and its chunks, from the parsed arguments (files checked, rows counted)."""
    logits = args.logits is not None
    predictions = args.probabilities
    if isinstance(args.logits, str):
        if predictions is not None:
            raise BadInput("--logits", "give the predictions once: --logits FILE, or "
                           "--probabilities FILE with --logits")
        predictions = args.logits
    if predictions is None:
        raise BadInput("--probabilities", "expected the predictions: --probabilities FILE "
                       "(or --logits FILE)")
    paths = {"probabilities": predictions, "labels": args.labels,
             "sample_weights": args.sample_weights, "targets": args.targets,
             "groups": args.groups}
    inputs = {
        name: Input(name, expand(path), _columns(getattr(args, f"{name}_column")))
        for name, path in paths.items() if path is not None
    }
    reports = _reports(args.report, "targets" in inputs)
    if args.diagram and "calibration" not in reports:
        raise BadInput("--diagram", "the diagram is drawn from the calibration report, which "
                       "--report leaves out")
    if "groups" in inputs and "calibration" not in reports:
        raise BadInput("--groups", "the groups slice the calibration report, which --report "
                       "leaves out")
    if "divergences" in reports and "targets" not in inputs:
        raise BadInput("--report", "the divergences report needs --targets (the reference "
                       "distributions p; the predictions are q)")
    first = inputs["probabilities"]
    c = width(first.files[0], first.columns)
    chunk_rows = args.chunk_rows or max(1, DEFAULT_CHUNK_NUMBERS // max(c, 1))
    if chunk_rows < 1:
        raise BadInput("--chunk-rows", f"expected a positive number of rows, got {chunk_rows}")
    for inp in inputs.values():
        if len(inp.files) != len(first.files):
            raise BadInput(inp.files[0], f"{len(inp.files)} files of {inp.name} for "
                           f"{len(first.files)} of predictions: partitions must match")
    layouts = {name: [layout(f, inp.columns, chunk_rows) for f in inp.files]
               for name, inp in inputs.items()}
    for name, inp in inputs.items():
        for part, (mine, theirs) in enumerate(zip(layouts[name], layouts["probabilities"],
                                                  strict=True)):
            if mine.n_rows != theirs.n_rows:
                raise BadInput(inp.files[part], f"{mine.n_rows} rows of {name}, but "
                               f"{first.files[part]} has {theirs.n_rows} rows")
    if "groups" in inputs:
        inputs["groups"] = _groups_input(inputs["groups"], layouts["groups"][0])
    chunks: list[Chunk] = []
    run_rows = 0  # rows of the partitions before this one
    for part, lay in enumerate(layouts["probabilities"]):
        for k, start in enumerate(range(0, lay.n_rows, chunk_rows)):
            offsets = {name: layouts[name][part].offsets[k] for name in inputs
                       if layouts[name][part].offsets}
            chunks.append(Chunk(part, start, min(start + chunk_rows, lay.n_rows), offsets,
                                run_rows + start))
        run_rows += lay.n_rows
    if not chunks:
        raise BadInput(first.files[0], "no rows to evaluate")
    binary = c == 0
    options = _options(args, reports, binary)
    return Job(inputs, logits, binary, reports, options), chunks


def _groups_input(inp: Input, first: Layout) -> Input:
    """The groups are one value per row; a CSV column holds integers if its first row is
    one, else strings (decided once, so that every chunk's groups are of one type)."""
    path = inp.files[0]
    if width(path, inp.columns) != 0:
        raise BadInput(path, "expected one group per row (a 1-D array or one column)",
                       column=inp.columns[0] if inp.columns else None)
    if not path.endswith(".csv") or not first.n_rows:
        return inp
    head = read(path, inp.columns, 0, 1, first.offsets[0], str)
    parse = np.int64 if re.fullmatch(r"\s*[-+]?\d+\s*", str(head[0])) else str
    return dataclasses.replace(inp, parse=parse)


def _reports(text: str | None, with_targets: bool) -> tuple[str, ...]:
    if text is None:
        return ("losses", "calibration", "divergences") if with_targets else (
            "losses", "calibration")
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in REPORTS:
            raise BadInput("--report", f"expected some of {', '.join(REPORTS)}, got {n!r}")
    if not names:
        raise BadInput("--report", "expected at least one report")
    return tuple(dict.fromkeys(names))


def _options(args: argparse.Namespace, reports: tuple[str, ...], binary: bool
             ) -> dict[str, dict[str, Any]]:
    given = {name: getattr(args, f"opt_{name}") for name in option_flags()
             if getattr(args, f"opt_{name}") is not None}
    used: set[str] = set()
    options: dict[str, dict[str, Any]] = {}
    for report in reports:
        table = _tables(report, binary)
        options[report] = {n: v for n, v in given.items() if n in table}
        used.update(options[report])
    for name in given.keys() - used:
        takes = option_flags()[name][1]
        raise BadInput(f"--{name.replace('_', '-')}", f"applies to the {' or '.join(takes)} "
                       f"report{'s' if len(takes) > 1 else ''} (with "
                       f"{'binary' if not binary else 'multi-class'} predictions, if losses), "
                       "which this run does not compute")
    return options


# --------------------------------------------------------------------------- running


class _Merger:
    """States merged as they come: FAN_IN at a time, so memory holds at most FAN_IN
    states of each report whatever the number of chunks."""

    def __init__(self) -> None:
        self.pending: dict[str, list[State]] = {}

    def add(self, states: dict[str, State]) -> None:
        for name, s in states.items():
            items = self.pending.setdefault(name, [])
            items.append(s)
            if len(items) == FAN_IN:
                self.pending[name] = [xentropy.merge(items)]

    def result(self) -> dict[str, State]:
        return {name: xentropy.merge(items) for name, items in self.pending.items()}


def evaluate_local(job: Job, chunks: Sequence[Chunk],
                   progress: Callable[[int], None] = lambda n: None) -> dict[str, State]:
    merger = _Merger()
    for chunk in chunks:
        merger.add(chunk_states(job, chunk))
        progress(chunk.stop - chunk.start)
    return merger.result()


def evaluate_dask(job: Job, chunks: Sequence[Chunk], spec: str) -> dict[str, State]:
    """The chunks as a Dask graph: one task per chunk, a tree merge per report."""
    import dask  # the [dask] extra

    from xentropy.dask import scheduler, tree_merge

    parts = [dask.delayed(chunk_states, pure=True)(job, c) for c in chunks]
    merged = {name: tree_merge([dask.delayed(_pick)(p, name) for p in parts])
              for name in job.reports}
    with scheduler(spec):
        (out,) = dask.compute(merged)
    return dict(out)


def _pick(states: dict[str, State], name: str) -> State:
    return states[name]


def _bar(total: int, enabled: bool | None) -> tuple[Callable[[int], None], Callable[[], None]]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return (lambda n: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr,
               desc="xentropy evaluate")
    return bar.update, bar.close


def run(args: argparse.Namespace) -> int:
    """Run ``xentropy evaluate`` with parsed arguments: 0 done, 2 bad input."""
    try:
        job, chunks = plan(args)
        n_rows = sum(c.stop - c.start for c in chunks)
        if args.scheduler:
            merged = evaluate_dask(job, chunks, args.scheduler)
        else:
            update, close = _bar(n_rows, args.progress)
            try:
                merged = evaluate_local(job, chunks, update)
            finally:
                close()
        answers = {name: merged_json(s) for name, s in merged.items()}
        results = {name: xentropy.finalize(s) for name, s in merged.items()}
    except BadInput as error:
        print(f"xentropy evaluate: error: {error}", file=sys.stderr)
        return 2
    except InputError as error:  # a merge or a finalize overflowing float64
        print(f"xentropy evaluate: error: {error}", file=sys.stderr)
        return 2
    for path, content in ((args.output, lambda: dumps(answers)), (args.diagram, lambda: (
            xentropy.reliability_diagram(results["calibration"]).encode()))):
        if path:
            try:
                with open(path, "wb") as f:
                    f.write(content())
            except OSError as error:
                print(f"xentropy evaluate: error: {path}: cannot write: {error.strerror}",
                      file=sys.stderr)
                return 2
    sys.stdout.write(summary(job, n_rows, len(chunks), results))
    return 0


def dumps(content: Any) -> bytes:
    """JSON as the service writes it (orjson: its float format, numpy arrays natively)."""
    import orjson

    return bytes(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))


# --------------------------------------------------------------------------- the table


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.4e}"
    return f"{x:.6f}"


def _rows(pairs: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "".join(f"  {k:<{width}}  {v}\n" for k, v in pairs)


def _groups_table(per_group: tuple[Any, ...]) -> str:
    """One line per group (the first SHOWN_GROUPS, in first-appearance order)."""
    names = [str(g.group) if len(str(g.group)) <= 16 else str(g.group)[:15] + "…"
             for g in per_group[:SHOWN_GROUPS]]
    w = max(5, *map(len, names))
    out = [f"\n  per group ({len(per_group)} group{'s' if len(per_group) != 1 else ''})\n",
           f"  {'group':<{w}} {'n_samples':>10} {'accuracy':>10} {'confidence':>10} "
           f"{'nll':>10} {'brier':>10} {'ece':>10}\n"]
    for name, g in zip(names, per_group, strict=False):
        out.append(f"  {name:<{w}} {g.n_samples:>10} {_num(g.accuracy):>10} "
                   f"{_num(g.mean_confidence):>10} {_num(g.nll):>10} {_num(g.brier):>10} "
                   f"{_num(g.ece):>10}\n")
    if len(per_group) > SHOWN_GROUPS:
        out.append(f"  … {len(per_group) - SHOWN_GROUPS} more in --output\n")
    return "".join(out)


def summary(job: Job, n_rows: int, n_chunks: int, results: dict[str, Any]) -> str:
    """The readable table printed on stdout."""
    what = "logits" if job.logits else "probabilities"
    files = job.inputs["probabilities"].files
    shown = files[0] if len(files) == 1 else f"{len(files)} files, {files[0]} to {files[-1]}"
    out = [f"{n_rows} rows in {n_chunks} chunk{'s' if n_chunks != 1 else ''} "
           f"({what}: {shown})\n"]
    if "losses" in results:
        r = results["losses"]
        out.append(f"\nlosses ({'binary' if job.binary else 'categorical'} cross-entropy, "
                   f"{r.units}, convention {r.convention})\n")
        out.append(_rows([("loss", _num(r.loss)), ("n_samples", str(r.n_samples)),
                          ("n_ignored", str(r.n_ignored)), ("weight_sum", _num(r.weight_sum))]))
    if "calibration" in results:
        r = results["calibration"]
        out.append(f"\ncalibration ({r.n_bins} {r.binning} bins, nll in {r.units})\n")
        out.append(_rows([(k, _num(getattr(r, k))) for k in (
            "accuracy", "mean_confidence", "nll", "brier", "ece", "mce", "rmsce", "ace")]))
        if r.approximate:
            out.append("  approximate: " + ", ".join(
                f"{a.statistic} ± {a.error_bound:.2g}" for a in r.approximate) + "\n")
        out.append(f"\n  {'bin':<15} {'count':>10} {'confidence':>10} {'accuracy':>10} "
                   f"{'gap':>9}\n")
        for b in r.bins:
            gap = None if b.accuracy is None else b.accuracy - b.mean_confidence
            out.append(f"  ({b.lower:.3f}, {b.upper:.3f}] {b.count:>10} "
                       f"{_num(b.mean_confidence):>10} {_num(b.accuracy):>10} "
                       f"{'-' if gap is None else f'{gap:+.6f}':>9}\n")
        if r.per_group is not None:
            out.append(_groups_table(r.per_group))
    if "divergences" in results:
        r = results["divergences"]
        out.append(f"\ndivergences (reference p: --targets, q: the predictions; {r.units})\n")
        out.append(_rows([(k, _num(getattr(r, k))) for k in (
            "entropy", "cross_entropy", "kl_divergence", "js_divergence")]))
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m xentropy.cli.evaluate ...``: the command without the service's entry point."""
    parser = argparse.ArgumentParser(prog="xentropy evaluate", description=__doc__)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["Chunk", "Input", "Job", "add_parser", "chunk_states", "configure",
           "evaluate_local", "main", "plan", "run", "summary"]
