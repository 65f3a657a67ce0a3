"""The HTTP protocol uvicorn runs on each connection: its own (httptools), with a bound on the
request head and the API's error shape on the requests it refuses before the app sees them.

uvicorn on httptools refuses a URL past 64 KiB but reads headers without any limit: a client
could make a web process hold a 50 MB header (tried here). MAX_REQUEST_HEAD_BYTES bounds the
request line and headers together: a longer URL is a 414, a larger head a 431. A head that is
still arriving is counted as it comes, so at most the limit plus one read is ever held. A
request the parser cannot read gets a 400; all three answer with the one JSON error shape
(errors.py) and a fresh request id, where uvicorn would write a plain-text 400.
"""

from collections.abc import Iterable
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import error_body
from .request_id import new_request_id

log = structlog.get_logger(__name__)


class _Refused(Exception):
    """Raised in a parser callback: httptools stops parsing and uvicorn calls send_400_response."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 32_768  # set per server by http_protocol() below
    # The ASVS V3.4 headers (headers.py): these answers never reach the app and its middleware.
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading_head = True
        self.head_bytes = 0
        self.refusal = (400, "malformed HTTP request")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.reading_head and not self.transport.is_closing():
            self.head_bytes += len(data)  # of a head not complete yet: a header still arriving
            if self.head_bytes > self.max_head_bytes:
                self.refuse(431, "request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading_head = True
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        self.reading_head = False
        if len(self.url) > self.max_head_bytes:
            self.refusal = (414, "URL too long")
            raise _Refused
        # As sent: `name: value` and CRLF on each line.
        if len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_head_bytes:
            self.refusal = (431, "request head too large")
            raise _Refused
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self.refuse(*self.refusal)

    def refuse(self, status: int, detail: str) -> None:
        """Answer with the error shape and close: nothing else of this connection is read."""
        request_id = new_request_id()
        log.warning("request refused", status=status, reason=detail, request_id=request_id)
        body = error_body(request_id, detail)
        head = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *self.extra_headers):
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: %s\r\n" % request_id.encode(),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def http_protocol(
    max_head_bytes: int, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with this server's limit and headers."""
    attributes = {"max_head_bytes": max_head_bytes, "extra_headers": tuple(extra_headers)}
    return type("HttpProtocol", (BoundedHttpToolsProtocol,), attributes)
