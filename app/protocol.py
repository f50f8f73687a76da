"""The HTTP/1.1 protocol `xentropy serve` runs: uvicorn's httptools protocol, bounded.

uvicorn (0.54) reads request heads without any limit: httptools joins the pieces of a
header value with ``bytes +=`` (quadratic), on the event loop, so one connection sending
a 100 MiB header line stalled ``/healthz`` for everyone for seconds and was then answered
200; a connection that opens and sends nothing, or half a request line, is held forever
(about 1 010 of them exhausted a 1 024-descriptor limit and locked everyone out); and a
client that never reads its response keeps that response's bytes in the server's write
buffer for as long as it stays connected. ``XentropyHttpProtocol`` adds, per connection:

* a request head of at most ``max_header_bytes`` (request line and headers) with at most
  ``max_header_count`` fields, else 431; a request target of at most ``max_url_bytes``,
  else 414. The head is fed to the parser in pieces of at most 4 KiB and never beyond the
  limit, so the work a head costs is bounded by the limit, not by what the client sends;
* ``header_timeout``: a request's head must arrive within that many seconds of the
  connection's opening (or of the end of the previous response): a partial head gets 408,
  an idle connection is closed;
* ``write_timeout``: when the client reads nothing of a pending response for that long,
  the connection is aborted and its buffered response freed;
* ``max_connections`` per worker: at the limit, the connection that has waited longest
  without a request in progress is closed to make room; when every connection has a
  request in progress, the new one gets 503 (with ``Retry-After``) and is closed.

A refusal is a complete HTTP answer (JSON ``{"detail": ...}``, ``Connection: close``),
counted in ``xentropy_http_refused_total{reason}`` and written to the JSON access log.
After it, what the client still sends is read and dropped, unparsed, for at most a second
(a "lingering close"), so that the client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httptools
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.api.metrics_store import safely
from app.settings import get_settings

logger = logging.getLogger("xentropy")
access_logger = logging.getLogger("xentropy.access")

REFUSED = Counter(
    "xentropy_http_refused",
    "Requests or connections refused or closed by the transport limits, by reason.",
    ("reason",),
)

_IDLE, _HEAD, _BODY = 0, 1, 2  # between requests / reading a request's head / its body
_PIECE = 4096  # bytes of a head fed to the parser at a time
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is in ``_refusal``."""


class XentropyHttpProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` with bounded heads, header and write timeouts and a
    connection limit (the module docstring says what and why)."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self.max_header_bytes = settings.max_header_bytes
        self.max_header_count = settings.max_header_count
        self.max_url_bytes = settings.max_url_bytes
        self.header_timeout = settings.header_timeout
        self.write_timeout = settings.write_timeout
        self.max_connections = settings.max_connections
        self._phase = _IDLE
        self._head_bytes = 0
        self._url_bytes = 0
        self._n_headers = 0
        self._refusal: tuple[int, str, str] | None = None
        self._lingering = False
        self._linger_bytes = 0
        self._opened = time.monotonic()
        # Since when this connection waits for a request head (None: a request in progress);
        # the oldest waiting connection is the one closed when the limit is reached.
        self.waiting_since: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._write_mark = 0

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if full and not self._close_longest_waiting():
            self._refuse(503, "too many connections; retry in a moment", "connection_limit")
            return
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self.waiting_since = None
        super().connection_lost(exc)

    def _close_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request head, to make room
        for a new one. False when every other connection has a request in progress."""
        waiting = [
            c for c in self.connections
            if isinstance(c, XentropyHttpProtocol) and c is not self
            and c.waiting_since is not None and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        oldest.waiting_since = None
        _count("evicted_idle")
        oldest.transport.close()
        return True

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_bytes += len(data)
            if self._linger_bytes > _LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._phase == _BODY:
            self._feed(data)
            return
        view = memoryview(data)
        while view:
            if self._phase == _BODY:
                self._feed(view)
                return
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse_large_head()
                return
            piece = view[: min(room, _PIECE)]
            view = view[len(piece):]
            if not self._feed(piece):
                return
            if self._phase != _BODY:
                # Still in a head (or between requests); a head that has used all its room
                # without ending cannot end in time.
                self._head_bytes += len(piece)
                if self._head_bytes >= self.max_header_bytes and self._phase == _HEAD:
                    self._refuse_large_head()
                    return

    def _refuse_large_head(self) -> None:
        self._refuse(
            431,
            f"the request head (request line and headers) is larger than the limit of "
            f"{self.max_header_bytes} bytes",
            "header_too_large",
        )

    def _feed(self, data: bytes | memoryview) -> bool:
        """Parse ``data``; False when the connection was answered with an error."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return False
        return True

    # Parser callbacks (uvicorn's, plus counting)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_bytes = self._url_bytes = self._n_headers = 0

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.max_url_bytes:
            self._refusal = (
                414, f"the request target is longer than the limit of {self.max_url_bytes} "
                "bytes", "uri_too_long",
            )
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._n_headers += 1
        if self._n_headers > self.max_header_count:
            self._refusal = (
                431, f"the request has more than {self.max_header_count} header fields",
                "too_many_headers",
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self.waiting_since = None
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._wait_for_head()

    # ------------------------------------------------------------------ header timeout

    def _wait_for_head(self) -> None:
        self._cancel_header_timer()
        self.waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.transport.is_closing():
            return  # a request is in progress (pipelined): its end waits for the next head
        if self._phase == _HEAD:
            self._refuse(
                408, f"the request head was not received within {self.header_timeout:g} s",
                "header_timeout",
            )
        else:
            _count("idle_timeout")
            self.transport.close()

    # ------------------------------------------------------------------ write timeout

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_mark = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if self.transport.is_closing() and not self.transport.get_write_buffer_size():
            return
        pending = self.transport.get_write_buffer_size()
        if pending < self._write_mark:  # the client read some: another period
            self._write_mark = pending
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_timed_out)
            return
        logger.warning(
            "client %s read nothing of its response for %g s: connection aborted, %d "
            "buffered bytes freed", _client(self.client), self.write_timeout, pending,
        )
        _count("write_timeout")
        self.transport.abort()

    # ------------------------------------------------------------------ refusals

    def _refuse(self, status: int, detail: str, reason: str) -> None:
        """Answer ``status`` with a JSON detail, close the connection after a short
        lingering read, count and log it."""
        self._refusal = None
        self._cancel_header_timer()
        self.waiting_since = None
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n",
        ]
        if status == 503:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        _count(reason)
        _log(self.client, status, reason, time.monotonic() - self._opened, len(body))
        # Read and drop what the client still sends (unparsed) for a moment, so that it
        # gets the answer, not a reset from closing a socket with unread data.
        self._lingering = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)


def _client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"


def _count(reason: str) -> None:
    child = safely(REFUSED.labels, reason)
    if child is not None:
        safely(child.inc)


def _log(
    client: tuple[str, int] | None, status: int, reason: str, duration: float, size: int
) -> None:
    """A JSON access-log line as app.api.middleware writes them, for an answer given
    before any route saw the request."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "method": None,
        "route": "<transport>",
        "path": None,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
        "bytes_in": 0,
        "bytes_out": size,
        "request_id": None,
        "client": client[0] if client else None,
        "reason": reason,
    }
    access_logger.info(json.dumps(record, separators=(",", ":")))
