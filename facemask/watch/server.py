"""The watch's HTTP server: live view page, MJPEG stream, /counts, /metrics, /health, /ready."""
from __future__ import annotations

import base64
import hmac
import json
import logging
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST

from facemask.watch.capped_server import CappedHTTPServer
from facemask.watch.watcher import Watch

log = logging.getLogger("facemask.watch")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live view: {camera}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}} img{{max-width:100%;height:auto;
background:#222}} ul{{list-style:none;padding:0;display:flex;gap:1rem;flex-wrap:wrap}} li{{padding:.2rem .6rem;
border-radius:.3rem;background:#eee}}</style></head>
<body><h1>Live view: {camera}</h1>
<p id="state">Connecting...</p>
<img id="live" src="/stream.mjpg" alt="Annotated live view of camera {camera}" width="640" height="480">
<h2>In view</h2><ul id="in-view"></ul>
<h2>People counted</h2><ul id="people"></ul>
<script>
function chips(list, counts) {{
  list.replaceChildren(...Object.entries(counts).map(([label, n]) => {{
    const item = document.createElement("li"); item.dataset.label = label; item.textContent = label + ": " + n;
    return item; }}));
}}
async function refresh() {{
  try {{
    const status = await (await fetch("/counts")).json();
    document.getElementById("state").textContent = (status.connected ? "Watching" : "Source lost, reconnecting")
      + " - " + status.frames_per_second + " frames/s, " + status.people.total + " people, "
      + status.reconnects + " reconnect(s)";
    chips(document.getElementById("in-view"), status.in_view);
    chips(document.getElementById("people"), status.people.by_label);
  }} catch (error) {{ document.getElementById("state").textContent = "The watch is not answering"; }}
}}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


def make_server(watch: Watch, host: str, port: int) -> CappedHTTPServer:
    """At most options.live_max_connections served at once, the next ones answered 503; a connection idle for
    options.live_idle_timeout_s is closed."""
    page = PAGE.format(camera=watch.options.camera.replace("<", "").replace(">", "")).encode()

    class LiveViewHandler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: dict) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _authorised(self, path: str) -> bool:
            token = watch.options.auth_token
            if not token or path in ("/health", "/ready"):
                return True
            scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
            given = credentials
            if scheme.lower() == "basic":
                try:
                    given = base64.b64decode(credentials).decode("utf-8").partition(":")[2]
                except (ValueError, UnicodeDecodeError):
                    given = ""
            elif scheme.lower() != "bearer":
                given = ""
            return hmac.compare_digest(given.encode(), token.encode())

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if not self._authorised(path):
                body = json.dumps({"error": "this watch asks for a token (FACEMASK_WATCH_TOKEN)", "status": 401})
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="facemask watch", charset="UTF-8"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                return
            if path == "/":
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/counts":
                self._json(200, watch.status())
            elif path == "/metrics":
                self._send(200, watch.metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/health":
                self._json(200, {"status": "ok"})
            elif path == "/ready":
                self._json(200 if watch.connected else 503, {"connected": watch.connected})
            elif path == "/stream.mjpg":
                self._stream()
            elif path == "/events":
                self._json(200, {"events": watch.event_book.listing()})
            elif path.startswith("/events/"):
                self._event(path.split("/")[2:])
            else:
                self._json(404, {"error": f"no such page: {path}", "status": 404})

        def _event(self, parts: list[str]) -> None:
            event = watch.event_book.get(parts[0])
            media = {"snapshot.jpg": ("snapshot", "image/jpeg"), "clip.mp4": ("clip", "video/mp4")}
            if event is None or len(parts) > 2 or (len(parts) == 2 and parts[1] not in media):
                self._json(404, {"error": "no such event", "status": 404})
            elif len(parts) == 1:
                self._json(200, event)
            else:
                kind, content_type = media[parts[1]]
                path = watch.event_book.file_path(parts[0], kind)
                try:
                    body = path.read_bytes() if path is not None else None
                except OSError:
                    body = None
                if body is None:
                    self._json(404, {"error": f"this event has no {kind} (yet)", "status": 404})
                else:
                    self._send(200, body, content_type)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                for jpeg in watch.live.frames():
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
            except OSError:  # the viewer went away, or took no frame for the idle time-out
                return

    return CappedHTTPServer((host, port), LiveViewHandler, watch.options.live_max_connections,
                            watch.options.live_idle_timeout_s)
