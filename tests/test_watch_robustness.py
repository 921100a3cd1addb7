"""Issue 35 (hold up, round three) against the real watch process: secrets in source URLs, a webhook receiver that
answers one byte at a time, events pending across a restart, a camera that never sends a decodable frame, and idle
sockets on the live view. Cameras and receivers are served by the test itself on loopback."""
from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from bench.mjpeg_stream import CameraProcess, load_jpegs
from bench.watch_soak import WebhookReceiver, start_watch, wait_for, watch_status
from facemask.serving.local_server import free_port
from facemask.watch.delivery import post_json, record_key
from facemask.watch.metrics import WatchMetrics
from facemask.watch.options import WatchOptions
from facemask.watch.webhook import WebhookSender
from tests.test_watch import ALL_LABELS, stop, write_clip

SECRETS = ("admin", "S3cr3tPw", "ABCSECRET")


def with_secrets(url: str) -> str:
    """The camera's URL with a user, a password and a token, as the issue's probe gave it."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://admin:S3cr3tPw@{rest}?token=ABCSECRET"


def no_secret_in(*texts: str) -> bool:
    return not any(secret in text for text in texts for secret in SECRETS)


class LoopbackServer:
    """A ThreadingHTTPServer of the test's own on a free loopback port, stopped by stop()."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def undecodable_camera(good_jpegs: list[bytes]) -> tuple[LoopbackServer, dict]:
    """The issue's camera: multipart/x-mixed-replace, 25 parts a second, each FFD8FFE0 and 20,000 random bytes.
    state["good"] = True makes it serve real frames from then on; state["connections"] counts the GETs."""
    state = {"good": False, "connections": 0}

    class Camera(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["connections"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            index = 0
            try:
                while True:
                    data = good_jpegs[index % len(good_jpegs)] if state["good"] else \
                        b"\xff\xd8\xff\xe0" + os.urandom(20_000)
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(data), data))
                    index += 1
                    time.sleep(0.04)
            except (BrokenPipeError, ConnectionResetError):
                return

    return LoopbackServer(Camera), state


def dripping_receiver() -> LoopbackServer:
    """A webhook receiver that reads the event, then answers one byte a second, for ever (for 45 minutes)."""
    class Drip(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            try:
                for byte in b"HTTP/1.1 204 No Content\r\n" * 100:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
            except (BrokenPipeError, ConnectionResetError):
                return

    return LoopbackServer(Drip)


# 4. Secrets in source URLs.

def test_the_watch_never_repeats_a_cameras_password_or_token(classifier_service, tmp_path):
    """`--source 'rtsp://admin:S3cr3tPw@127.0.0.1:4199/s?token=ABCSECRET'` logged the password; /counts the token."""
    source, port, log = with_secrets(f"rtsp://127.0.0.1:{free_port()}/s"), free_port(), tmp_path / "watch.log"
    with log.open("w") as stderr:
        watch = start_watch(source, classifier_service.url, "--camera", "door", listen=port, stderr=stderr)
        try:
            wait_for(lambda: "cannot open stream" in log.read_text(), 60, "the watch to try the camera")
            counts = requests.get(f"http://127.0.0.1:{port}/counts", timeout=5).text
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            _, out, _ = stop(watch)
    text = log.read_text()
    assert "cannot open stream rtsp://***@127.0.0.1:" in text and "/s?token=***" in text, text
    assert json.loads(counts)["source"].endswith("/s?token=***"), counts
    assert no_secret_in(text, counts, metrics, out), text


@pytest.mark.slow  # people counted, events raised and delivered: tens of seconds
def test_events_webhook_recordings_and_metrics_carry_no_secret_of_the_source(classifier_service, tmp_path):
    write_clip(tmp_path / "door.avi", 40)
    camera, receiver, port = CameraProcess(tmp_path / "door.avi", fps=10.0), WebhookReceiver(), free_port()
    camera.start()
    receiver.start()
    events, recordings, log = tmp_path / "events.jsonl", tmp_path / "recordings", tmp_path / "watch.log"
    with log.open("w") as stderr:
        watch = start_watch(with_secrets(camera.url), classifier_service.url, "--events", events, "--webhook",
                            receiver.url, "--record", recordings, "--event-labels", ALL_LABELS, listen=port,
                            stderr=stderr)
        try:
            wait_for(lambda: (s := watch_status(port)) and s["people"]["total"] >= 6 and s["events"]["sent"] >= 6,
                     120, "six people counted and their events delivered")
            counts = requests.get(f"http://127.0.0.1:{port}/counts", timeout=5).text
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            _, out, _ = stop(watch)
            camera.kill()
            receiver.stop()
    files = [path for path in recordings.rglob("*") if path.is_file()]  # recordings and their event snapshots
    names = " ".join(path.name for path in files)
    assert files and all(path.name.startswith("door_") for path in files), names  # named after the URL's path only
    delivered = json.dumps(receiver.received)
    assert no_secret_in(log.read_text(), out, counts, metrics, events.read_text(), delivered, names)
    assert "watching http://***@127.0.0.1:" in log.read_text()


# 5. The webhook: a deadline per attempt, drops logged and counted, the queue kept across a restart.

@pytest.mark.slow  # waits out time-outs by design
def test_a_receiver_answering_a_byte_a_second_cannot_hold_the_webhook(caplog):
    """The issue's receiver (a byte every 2 s) held the first POST for 3 min 24 s and counting, with
    --webhook-timeout 5: the time-out applied to each read. Here: a byte a second, a 3 s time-out."""
    receiver = dripping_receiver()
    metrics = WatchMetrics("door")
    options = WatchOptions(webhook_timeout_s=3, webhook_give_up_s=6, webhook_retry_min_s=0.2)
    sender = WebhookSender(f"http://127.0.0.1:{receiver.port}/hook", options, metrics)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="facemask.watch"):
            sender.submit({"id": "event-0"})
            wait_for(lambda: "not delivered" in caplog.text, 10, "the first attempt to time out")
            first_attempt = time.monotonic() - started
            wait_for(lambda: sender.failed == 1, 15, "the event to be given up")
    finally:
        sender.close(drain_s=0)
        receiver.stop()
    assert first_attempt < 3 + 1.5, first_attempt
    assert "timed out after 3 s" in caplog.text, caplog.text
    assert 'facemask_watch_events_total{camera="door",outcome="failed"} 1.0' in metrics.exposition().decode()


class ForwardingProxy:
    """A plain-HTTP forward proxy on loopback: records each request's target and Proxy-Authorization, then sends
    the POST on to the URL it names and answers with the receiver's status."""

    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Forward(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy.seen.append((self.path, self.headers.get("Proxy-Authorization")))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items() if k.lower().startswith(("content-", "idempotency"))}
                answer = requests.post(self.path, data=body, headers=headers, timeout=5,
                                       proxies={"http": None, "https": None})
                self.send_response(answer.status_code)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Forward)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_goes_through_the_proxy_the_environment_names_unless_no_proxy_says_not(monkeypatch):
    """requests honoured HTTP_PROXY; the deadline-bound POST of issue 35 must too (user:password included)."""
    receiver, proxy = WebhookReceiver(), ForwardingProxy()
    receiver.start()
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://cam%40site:pa%20ss@"))
    try:
        assert post_json(receiver.url, {"id": "via-proxy"}, {"Idempotency-Key": "via-proxy"}, 5) == 204
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert post_json(receiver.url, {"id": "direct"}, {"Idempotency-Key": "direct"}, 5) == 204
    finally:
        proxy.stop()
        receiver.stop()
    assert proxy.seen == [(receiver.url, "Basic " + base64.b64encode(b"cam@site:pa ss").decode())]
    assert [key for key, _ in receiver.received] == ["via-proxy", "direct"]

@pytest.mark.slow  # two watch runs, one of them over a clip with people
def test_events_still_queued_for_the_webhook_are_sent_after_a_restart(classifier_service, tmp_path):
    write_clip(tmp_path / "door.avi", 40)
    receiver, events = WebhookReceiver(), tmp_path / "events.jsonl"  # not started: the webhook is down
    first = start_watch(str(tmp_path / "door.avi"), classifier_service.url, "--camera", "door", "--events", events,
                        "--webhook", receiver.url, "--event-labels", ALL_LABELS, "--webhook-queue", "4")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    raised = [json.loads(line) for line in events.read_text().splitlines()]  # 6 events: their starts and ends
    status = json.loads(out.strip().splitlines()[-1])["events"]
    assert len(raised) == 12 and status["raised"] == 6 and status["sent"] == 0, status
    # The queue holds 4 (one of them in flight): the others were dropped, each logged and counted.
    assert status["dropped"] >= 1 and err.count("dropped (kept in the events file") == status["dropped"], err
    assert "not delivered at shutdown" in err

    receiver.start()
    port = free_port()
    offline = f"rtsp://127.0.0.1:{free_port()}/door"  # the camera is away: no new event, only the old ones
    try:
        second = start_watch(offline, classifier_service.url, "--camera", "door", "--events", events,
                             "--webhook", receiver.url, listen=port)
        try:
            wait_for(lambda: len(receiver.received) >= 12, 60, "the pending records after the restart")
            time.sleep(1)
        finally:
            _, _, err = stop(second)
        third = start_watch(offline, classifier_service.url, "--camera", "door", "--events", events,
                            "--webhook", receiver.url, listen=port)
        try:
            wait_for(lambda: watch_status(port), 60, "the third run to answer")
            time.sleep(2)
        finally:
            stop(third)
    finally:
        receiver.stop()
    assert sorted(key for key, _ in receiver.received) == sorted(record_key(event) for event in raised), \
        "every record (start and end) of the first run delivered once, dropped ones included, none twice"
    assert "12 event record(s) still to deliver from the events file" in err, err


# 6. A camera that never sends a decodable frame.

@pytest.mark.slow  # waits out stream time-outs by design
def test_a_camera_sending_only_undecodable_frames_is_a_stalled_source(classifier_service, tmp_path):
    """The watch logged "watching ..." and then nothing for 14 minutes: 0 frames, no reconnect, no log line."""
    good = tmp_path / "door.avi"
    write_clip(good, 20)
    camera, state = undecodable_camera(load_jpegs(str(good))[0])
    port, log = free_port(), tmp_path / "watch.log"
    with log.open("w") as stderr:
        watch = start_watch(f"http://127.0.0.1:{camera.port}/door.mjpg", classifier_service.url, "--camera", "door",
                            "--stream-timeout", "2", "--reconnect-max", "1", listen=port, stderr=stderr)
        try:
            wait_for(lambda: "no decodable frame for" in log.read_text() and state["connections"] >= 3, 90,
                     "the stall logged, and the camera tried again")
            assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 503
            state["good"] = True  # the camera recovers: the watch must take it back
            wait_for(lambda: watch_status(port).get("frames", 0) > 10, 60, "frames from the recovered camera")
            assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
        finally:
            stop(watch)
            camera.stop()
    lines = [line for line in log.read_text().splitlines() if "no decodable frame for" in line]
    assert all("stalled" in line and "reconnecting" in line for line in lines), lines


# 10. Idle sockets on the live view.

def threads_of(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Threads:")))


@pytest.mark.slow  # waits out the idle time-out by design
def test_the_live_view_caps_its_connections_and_drops_idle_ones(classifier_service, tmp_path):
    """3,000 idle sockets made one thread each and never timed out (+75 MB)."""
    port = free_port()
    watch = start_watch(f"rtsp://127.0.0.1:{free_port()}/door", classifier_service.url, "--camera", "door",
                        "--live-max-connections", "4", "--live-idle-timeout", "1", listen=port)
    idle: list[socket.socket] = []
    try:
        wait_for(lambda: watch_status(port), 60, "the live view")
        baseline = threads_of(watch.pid)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
        time.sleep(0.5)
        assert threads_of(watch.pid) <= baseline + 4, "one thread per idle socket"
        refused = requests.get(f"http://127.0.0.1:{port}/counts", timeout=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        assert "connections" in refused.json()["error"], refused.text
        held = idle[:4]  # the ones the server took in: closed by the server once idle for 1 s
        wait_for(lambda: all(not sock.recv(1) for sock in held), 10, "the idle connections to be closed")
        for sock in idle:
            sock.close()
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/counts", timeout=5).status_code == 200, 10,
                 "the live view to answer again")
    finally:
        for sock in idle:
            sock.close()
        code, _, err = stop(watch)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
