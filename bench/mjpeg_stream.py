"""A camera on loopback: the frames of a video file served as an endless MJPEG stream over HTTP, at the video's
frame rate, the way IP cameras serve `http://camera/video.mjpg`. tests/test_watch.py and bench/watch_soak.py start
it as a process of its own, kill it and bring it back to play a camera that drops off the network.

    python -m bench.mjpeg_stream --video clip.avi --port 8554     # http://127.0.0.1:8554/<anything>.mjpg

Every client gets the whole loop from the first frame; frames are JPEG-encoded once, at start-up.
"""
from __future__ import annotations

import argparse
import http.server
import subprocess
import sys
import time
from pathlib import Path

import cv2

from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import free_port

BOUNDARY = b"frame"


def load_jpegs(video: str) -> tuple[list[bytes], float]:
    capture = cv2.VideoCapture(video)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    jpegs = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    capture.release()
    if not jpegs:
        raise SystemExit(f"error: no frames in {video}")
    return jpegs, fps


def serve(jpegs: list[bytes], fps: float, port: int) -> None:
    class Camera(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
            self.end_headers()
            next_at, index = time.monotonic(), 0
            try:
                while True:
                    data = jpegs[index % len(jpegs)]
                    self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (BOUNDARY, len(data), data))
                    index += 1
                    next_at += 1.0 / fps
                    time.sleep(max(0.0, next_at - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Camera)
    server.daemon_threads = True
    print(f"serving on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


class CameraProcess:
    """This server in a process of its own on a fixed port, so a test can kill it and bring it back."""

    def __init__(self, video: Path, fps: float | None = None):
        self.video, self.fps, self.port = video, fps, free_port()
        self.process: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}/door.mjpg"

    def start(self) -> None:
        command = [sys.executable, "-m", "bench.mjpeg_stream", "--video", str(self.video), "--port", str(self.port)]
        self.process = process = subprocess.Popen(command + (["--fps", str(self.fps)] if self.fps else []),
                                                  cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  text=True)
        line = process.stdout.readline() if process.stdout else ""
        if "serving on" not in line:
            raise RuntimeError(f"the MJPEG camera did not start: {line.strip()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True, help="video file whose frames are served in a loop")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the video's)")
    args = parser.parse_args(argv)
    jpegs, fps = load_jpegs(args.video)
    serve(jpegs, args.fps or fps, args.port)


if __name__ == "__main__":
    main()
