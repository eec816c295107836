"""The HTTP side of the fake: the standard library's ThreadingHTTPServer over TLS.

A thread per connection, HTTP/1.1 keep-alive, and the TLS handshake done in the
connection's own thread so a client that stalls or fails it never blocks the others.
Each request is handed to FakeEntra.serve; a None answer closes the connection without
a byte (a "dropped" request).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import FakeEntra


def client_gone(connection: socket.socket) -> bool:
    """True if the client closed its connection while the request waited (a client that
    sends nothing more until it has its answer is readable only once it has closed)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeEntra/1.0"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this
    server: Server

    def setup(self) -> None:
        # headers and body go out as separate writes: without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add about 40 ms to every answer
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(self.timeout)
        self.server.track(self.request)
        try:
            self.request.do_handshake()  # TLS in this connection's thread, not the acceptor's
        except BaseException:
            # finish() only runs after a successful setup(): untrack here, or a client that
            # dies during the handshake stays counted in open_connections forever.
            self.server.untrack(self.request)
            raise
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.request)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET  # noqa: N815

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.fake.serve(self.command, self.path, headers, body, self.connection)
        if reply is None:  # drop: close without a byte of answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, reply_headers, payload = reply
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the fake keeps its own log (FakeEntra.requests)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, fake: FakeEntra, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fake = fake
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
            self.fake.connections += 1

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that fail the TLS handshake or vanish are normal in fault tests; any
        # other error is a bug in the fake, kept for the fixture to report.
        error = sys.exc_info()[1]
        if isinstance(error, OSError | ssl.SSLError | ConnectionError | TimeoutError):
            return
        self.fake.server_errors.append(traceback.format_exc())
