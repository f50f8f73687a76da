"""`make bench`: every benchmark prints its figures as ratios to a baseline measured in the
same run (absolute times drift on shared machines; ratios hold)."""

from __future__ import annotations

import argparse
import functools
import platform

import numpy as np

from bench import calibration, cluster, core, evaluate, service

SECTIONS = {
    "core": core.run,
    "json": service.json_and_encoded,
    "small": service.small_requests,
    "memory": service.memory,
    "calibration-extras": calibration.extras,
    "evaluate": evaluate.run,
    "dask": cluster.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter loads")
    parser.add_argument("--rows", type=int, default=None,
                        help="evaluate: rows of the file (default 10^7; 10^6 with --quick)")
    args = parser.parse_args()
    SECTIONS["evaluate"] = functools.partial(evaluate.run, rows=args.rows)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    print(f"# {platform.node()} {platform.machine()} {platform.python_version()} "
          f"numpy {np.__version__}")
    for name in args.sections or SECTIONS:
        for line in SECTIONS[name](args.quick):
            print(line, flush=True)


if __name__ == "__main__":
    main()
