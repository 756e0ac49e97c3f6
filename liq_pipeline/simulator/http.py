"""HTTP plumbing of the simulator: a stdlib ``ThreadingHTTPServer`` and its request handler.

The endpoints (`kwery.py`, `newhedge.py`, the admin routes in `server.py`) only build a
`Response`; this module writes it. Every response carries ``Content-Length`` and connections
are kept alive (HTTP/1.1). The ``drop`` fault needs the raw socket and is sent here: the
headers with the full ``Content-Length``, half the body, then the socket is shut down (the
client sees an incomplete read).

Each connection has its own daemon thread, and closing the server (`Server.server_close`)
wakes every idle keep-alive connection at once.
"""

import contextlib
import email.utils
import socket
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson

# How often serve_forever looks at its stop flag, in seconds: `shutdown()` waits up to this
# long. Small, because tests start and close hundreds of simulators; an idle poll is cheap.
POLL_INTERVAL = 0.01


@dataclass
class Response:
    """What an endpoint answers; the handler turns it into bytes on the socket."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False  # send the headers and half the body, then close the connection


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def json_response(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload))


def query_value(params: Mapping[str, list[str]], name: str) -> str | None:
    """The first value of query parameter `name` (None when absent)."""
    values = params.get(name)
    return values[0] if values else None


class App(Protocol):
    """What the server serves: one call per request (method, target with query, body)."""

    def handle(self, method: str, target: str, body: bytes = b"") -> Response: ...


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "liq-simulator/1.0"
    server: "Server"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write anyway; NODELAY also avoids Nagle stalls.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        body = self.rfile.read(length) if length > 0 else b""
        try:
            if length < 0:
                self.close_connection = True
                resp = Response(400, error_body("bad_request", "Invalid Content-Length."))
            else:
                resp = self.server.app.handle(method, self.path, body)
        except Exception:  # a simulator bug: answer 500 instead of dropping the connection
            traceback.print_exc()
            resp = Response(500, error_body("simulator_error", "Unexpected simulator error."))
        self._send(resp)

    def _send(self, resp: Response) -> None:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Content-Type: application/json",
            f"Content-Length: {len(resp.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in resp.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if resp.drop:
            self.close_connection = True
            self.wfile.write(head + resp.body[: len(resp.body) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(head + resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and demos do not want a line per request


class Server(ThreadingHTTPServer):
    """Serves `app` on `address`; `server_close` also ends every open or held connection."""

    daemon_threads = True  # server_close never waits for handler threads
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, Handler)

    def serve(self) -> None:
        """`serve_forever`, polling often enough that `shutdown()` returns within 10 ms."""
        self.serve_forever(poll_interval=POLL_INTERVAL)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
        if add and self.stopping.is_set():  # accepted while closing: end it too
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Close the listening socket, then wake every idle keep-alive connection."""
        super().server_close()
        self.stopping.set()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
