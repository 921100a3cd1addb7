"""The watch's live-view HTTP server with bounds: at most max_connections served at once (one thread each), the
next ones answered 503 at once without a thread, and a connection that sends nothing for idle_timeout_s closed.
Before, 3,000 idle sockets made 3,000 threads that never ended (+75 MB, issue 35)."""
from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("facemask.watch")
LINGER_S = 1.0  # a refused socket stays open this long after its 503, so the client reads the answer, not a reset


class CappedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a cap on the connections it serves at once and an idle time-out on each."""

    daemon_threads = True
    request_queue_size = 128  # the accept backlog: a burst of viewers waits for accept() instead of a SYN retry

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int,
                 idle_timeout_s: float):
        # StreamRequestHandler sets its timeout on each socket: a read or a write that waits longer fails
        super().__init__(address, type(handler.__name__, (handler,), {"timeout": idle_timeout_s}))
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self.active = 0
        self.active_lock = threading.Lock()
        self.lingering: deque[tuple[float, socket.socket]] = deque()
        self.refused = 0

    def process_request(self, request, client_address) -> None:
        with self.active_lock:
            admitted = self.active < self.max_connections
            self.active += admitted
        if admitted:
            super().process_request(request, client_address)
        else:
            self._refuse(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.active_lock:
                self.active -= 1

    def _refuse(self, request: socket.socket) -> None:
        """503 from the accepting thread: no thread, no wait for the request (whatever of it arrived is read)."""
        self.refused += 1
        body = json.dumps({"error": f"too many connections to the live view (the limit is {self.max_connections}): "
                                    "try again shortly", "status": 503}).encode()
        answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        try:
            request.setblocking(False)
            try:
                request.recv(65536)
            except (BlockingIOError, InterruptedError):
                pass
            request.send(answer)  # a few hundred bytes: the socket's send buffer takes them at once
            request.shutdown(socket.SHUT_WR)
        except OSError:
            self.shutdown_request(request)
            return
        self.lingering.append((time.monotonic() + LINGER_S, request))

    def service_actions(self) -> None:
        """Called by serve_forever between polls: refused sockets whose linger has passed are closed."""
        while self.lingering and self.lingering[0][0] <= time.monotonic():
            self.shutdown_request(self.lingering.popleft()[1])

    def handle_error(self, request, client_address) -> None:
        """A connection that went away or timed out mid-answer is one debug line, not a traceback on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            LOG.debug("live view: connection from %s ended: %s", client_address[0], error)
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        while self.lingering:
            self.shutdown_request(self.lingering.popleft()[1])
