"""Where a request's time goes, from a py-spy profile of a real server under wrk.

    python bench/spy_breakdown.py PROFILE.txt REQUESTS

PROFILE.txt is ``py-spy record --nonblocking --threads -r 1000 -f raw`` of one worker
(the command is in bench/README.md); REQUESTS is how many it served while sampled (wrk's
count, warm-up included). Prints milliseconds per request by category: a sample goes to
the first of the specific categories any frame of its stack matches, else to the generic
layer of its deepest frame.
"""

from __future__ import annotations

import collections
import sys

PARSE = [
    ("parse: row check (translate)", ["_rectangular"]),
    ("parse: simdjson blocks", ["_simd_block"]),
    ("parse: split, matrix bookkeeping", ["split_body"]),
    ("parse: pydantic, labels, options, counts", [""]),
]
SPECIFIC = [
    ("parse", ["parse_request (", "read_states ("]),
    ("core (the loss)", ["softmax_cross_entropy_with_integer_labels (", "xentropy/losses/"]),
    ("answer (result -> JSON bytes)", ["_answer (app/api/routes", "answer (app/api/states"]),
    ("access log + metrics", ["_log (app/api/middleware", "_record (app/api/middleware",
                              "safely ("]),
    ("settings, API key, body read", ["read_json_body", "require_api_key", "current_settings",
                                      "security/"]),
]
GENERIC = [
    ("observability middleware (task, shield, wrappers)", ["app/api/middleware.py"]),
    ("compute lane (dispatch, scope, response)", ["app/api/lane.py"]),
    ("starlette/fastapi stack (routing, dependencies, errors, response)",
     ["starlette/", "fastapi/"]),
    ("uvicorn protocol (Python)", ["uvicorn/", "app/protocol.py"]),
    ("asyncio (Python)", ["asyncio/"]),
]


def category(frames: list[str]) -> str:
    for name, keys in SPECIFIC:
        if any(key in frame for frame in frames for key in keys):
            if name != "parse":
                return name
            return next(sub for sub, subkeys in PARSE
                        if any(key in frame for frame in frames for key in subkeys))
    for frame in reversed(frames):
        for name, keys in GENERIC:
            if any(key in frame for key in keys):
                return name
    return "event loop in C (uvloop, httptools, sockets)"


def main(path: str, requests: float) -> None:
    counts: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if "MainThread" in frames[0]:
                counts[category(frames[1:])] += int(n)
            else:
                counts["other threads: " + frames[0].split(": ", 1)[-1][:40]] += int(n)
    for name, n in counts.most_common():
        print(f"{n / requests:7.3f} ms  {name}")  # samples at 1 kHz: ms
    print(f"{sum(counts.values()) / requests:7.3f} ms  sampled, per request")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
