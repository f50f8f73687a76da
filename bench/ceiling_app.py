"""The ceiling of any request path on this stack: a raw ASGI app under the same uvicorn,
with no validation, no error handling, no logs and no metrics.

``/v1/losses/categorical`` reads the body, parses it with one simdjson call (logits and
labels straight into buffers), computes the same loss with the library's core and
answers ``{"loss": ...}``; any other path (``bench small`` uses ``/read``) reads the
body and answers a constant. What
``bench small`` prints for them bounds what the service can reach at each batch size:
the work left is JSON parsing and the core, not the framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import simdjson

import xentropy

_PARSER = simdjson.Parser()
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if scope["path"] == "/v1/losses/categorical":
        doc = _PARSER.parse(body)
        logits = doc["logits"]
        z = np.frombuffer(logits.as_buffer(of_type="d"), np.float64).reshape(len(logits), -1)
        y = np.frombuffer(doc["labels"].as_buffer(of_type="i"), np.int64)
        del logits, doc
        answer = orjson.dumps(
            {"loss": xentropy.softmax_cross_entropy_with_integer_labels(z, y).loss}
        )
    else:
        answer = b'{"hello":"world"}'
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": answer})
