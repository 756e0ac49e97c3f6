"""HTTP plumbing of the simulator: a stdlib ``ThreadingHTTPServer`` and its request handler.

The endpoints (`kwery.py`, `newhedge.py`, the admin routes in `server.py`) only build a
`Response`; this module writes it. Every response carries ``Content-Length`` and connections
are kept alive (HTTP/1.1). The fault responses that need the raw socket are sent here:

- ``drop``: the headers with the full ``Content-Length``, half the body, then the socket is shut
  down (the client sees an incomplete read).
- ``hang``: nothing is sent; the connection is held open until the client disconnects or the
  simulator closes, and then closed without a byte.
- ``delay``: the response is sent after that many seconds (the socket is watched meanwhile,
  so a client that gives up or a closing simulator ends the wait; the answer is then dropped).

Each connection has its own daemon thread, so a held connection never blocks other requests,
and closing the server (`Server.server_close`) wakes every held or idle connection at once:
closing never waits for a held request.
"""

import contextlib
import email.utils
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson

# How often serve_forever and held connections look at the stop flag, in seconds: `shutdown()`
# waits up to this long. Small, because tests start and close hundreds of simulators; an idle
# poll is cheap.
POLL_INTERVAL = 0.01


@dataclass
class Response:
    """What an endpoint answers; the handler turns it into bytes on the socket."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False  # send the headers and half the body, then close the connection
    hang: bool = False  # send nothing; hold the connection until the client or server closes
    delay: float = 0.0  # seconds to wait before sending (a slow API)


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
        if resp.hang or resp.delay > 0:
            waited = self._hold(None if resp.hang else resp.delay)
            if resp.hang or not waited:
                self.close_connection = True
                return
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

    def _hold(self, seconds: float | None) -> bool:
        """Send nothing for `seconds` (None: forever). False if the client or server closed first.

        Only this thread waits: the server keeps accepting and answering other connections.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        stopping = self.server.stopping
        watch = True  # look for the client closing; off once it sent more (a pipelined request)
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while not stopping.is_set():
                step = POLL_INTERVAL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return True
                    step = min(step, left)
                if not watch:
                    stopping.wait(step)
                    continue
                if not selector.select(step):
                    continue
                try:
                    # A held (never answered) connection discards what it gets; a delayed one
                    # leaves the next request in place for after its answer.
                    flags = 0 if seconds is None else socket.MSG_PEEK
                    got = self.connection.recv(65_536, flags)
                except OSError:
                    return False
                if not got:
                    return False  # the client disconnected
                watch = seconds is None
        return False

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
        """Close the listening socket, then wake every held, delayed or idle connection."""
        super().server_close()
        self.stopping.set()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
