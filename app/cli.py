"""Command line: `xentropy serve`, `xentropy export-openapi`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="xentropy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    serve.add_argument("--workers", type=int, default=settings.workers)
    serve.add_argument("--log-level", default=settings.log_level)

    export = commands.add_parser("export-openapi", help="write the OpenAPI document")
    export.add_argument("path", nargs="?", default="-", help="output file (default: stdout)")

    args = parser.parse_args(argv)
    if args.command == "serve":
        import uvicorn

        uvicorn.run(
            "app.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
        return 0
    from app.main import app

    text = json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.path == "-":
        sys.stdout.write(text)
    else:
        Path(args.path).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
