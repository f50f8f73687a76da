"""`xentropy serve` with one more route, for the shutdown tests: ``GET /test/busy?seconds=S``
is a plain ``def`` handler that holds its worker thread for S seconds, as a CPU-bound
NumPy computation does (nothing can interrupt it; it releases the GIL, so the event loop
runs on). One worker only: uvicorn imports ``app.main`` again in this process and finds
the route there. Importing this module changes nothing; running it does:

    python -m tests.e2e.slow_app serve --port 8000
"""

from __future__ import annotations

import time


def busy(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"seconds": seconds}


def main() -> int:
    from app import cli
    from app.main import app

    app.get("/test/busy", include_in_schema=False)(busy)
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
