"""The upload page's photo-from-a-URL fetch (detection/app/url_fetch.py): public addresses only, checked after DNS and
on every redirect BEFORE anything connects; the upload limit and a short deadline.

Nothing here leaves loopback: every connection the fetcher makes is recorded, and a refused address must never
appear among them. The test servers listen on 127.0.0.1 (reachable only with the test-only allow_loopback) or on
127.0.0.2, which one fetcher below treats as if it were a public address.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3.util.connection

from detection.app.url_fetch import PhotoFetcher, UrlRefused
from facemask.core.paths import REPO_ROOT

PHOTO = (REPO_ROOT / "sample-images" / "group_mixed.jpg").read_bytes()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/"):])
            self.end_headers()
            return
        if self.path == "/slow.jpg":
            time.sleep(3)
        body = {"/photo.jpg": PHOTO, "/slow.jpg": PHOTO, "/big.jpg": PHOTO * 4}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if self.path != "/big.jpg":  # the big one does not declare its size: the limit is counted while reading
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(address: str):
    server = ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server():
    with serve("127.0.0.1") as running:
        yield f"http://127.0.0.1:{running.server_address[1]}"
        running.shutdown()


@pytest.fixture(scope="module")
def second_loopback():
    """A server on 127.0.0.2, played as a public address by AsIfPublic."""
    with serve("127.0.0.2") as running:
        yield f"http://127.0.0.2:{running.server_address[1]}"
        running.shutdown()


class AsIfPublic(PhotoFetcher):
    def address_allowed(self, address: str) -> bool:
        return address == "127.0.0.2" or super().address_allowed(address)


@pytest.fixture
def connections(monkeypatch) -> list[str]:
    """Every address the fetcher connects to; one off loopback fails the test before any packet leaves."""
    made: list[str] = []
    real = urllib3.util.connection.create_connection

    def recording(address, *args, **kwargs):
        made.append(address[0])
        assert address[0].startswith("127."), f"connected to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recording)
    return made


def fetcher(**options) -> PhotoFetcher:
    return PhotoFetcher(max_bytes=options.pop("max_bytes", 20_000_000), timeout_s=options.pop("timeout_s", 2.0),
                        **options)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/photo.jpg", "http://10.0.0.1/photo.jpg", "https://192.168.1.20/a.jpg", "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://localhost:8000/photo.jpg", "http://[::1]/photo.jpg",
    "http://[::ffff:127.0.0.1]/photo.jpg", "http://0.0.0.0/", "http://100.64.0.1/", "http://[fe80::1]/",
    "http://224.0.0.1/", "http://2130706433/photo.jpg"])
def test_local_and_private_addresses_are_refused_before_any_connection(url, connections):
    with pytest.raises(UrlRefused, match="local or private address"):
        fetcher().fetch(url)
    assert connections == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "javascript:alert(1)",
                                 "gopher://example.com/", "http://", "not a url"])
def test_only_http_and_https_links_are_fetched(url, connections):
    with pytest.raises(UrlRefused, match="Only http:// and https://|not a valid"):
        fetcher().fetch(url)
    assert connections == []


def test_loopback_only_with_the_test_setting(server, connections):
    with pytest.raises(UrlRefused, match="local or private"):
        fetcher().fetch(f"{server}/photo.jpg")
    assert connections == []
    name, data = fetcher(allow_loopback=True).fetch(f"{server}/to//photo.jpg")  # and a redirect on the same host
    assert (name, data) == ("photo.jpg", PHOTO)
    assert connections == ["127.0.0.1", "127.0.0.1"]
    # The test setting opens loopback only: private ranges stay refused.
    with pytest.raises(UrlRefused, match="10.0.0.1"):
        fetcher(allow_loopback=True).fetch("http://10.0.0.1/photo.jpg")


def test_a_redirect_to_a_private_or_loopback_address_is_refused_before_following_it(server, second_loopback,
                                                                                   connections):
    for target in ("http://10.0.0.1/photo.jpg", "http://127.0.0.1/photo.jpg", f"{server}/photo.jpg",
                   "http://localhost/photo.jpg"):
        with pytest.raises(UrlRefused, match="local or private address"):
            AsIfPublic(max_bytes=20_000_000, timeout_s=2.0).fetch(f"{second_loopback}/to/{target}")
    assert set(connections) == {"127.0.0.2"}, "only the public-looking first hop was connected to"
    # The same redirect chain to a public-looking address is followed.
    assert AsIfPublic(max_bytes=20_000_000, timeout_s=2.0).fetch(
        f"{second_loopback}/to/{second_loopback}/photo.jpg") == ("photo.jpg", PHOTO)


def test_size_limit_and_deadline(server, connections):
    with pytest.raises(UrlRefused, match="larger than the 0.1 MB limit"):
        fetcher(allow_loopback=True, max_bytes=100_000).fetch(f"{server}/photo.jpg")  # declared size
    with pytest.raises(UrlRefused, match="larger than the"):
        fetcher(allow_loopback=True, max_bytes=len(PHOTO) * 2).fetch(f"{server}/big.jpg")  # counted while reading
    started = time.monotonic()
    with pytest.raises(UrlRefused, match="did not answer within 0.5 s"):
        fetcher(allow_loopback=True, timeout_s=0.5).fetch(f"{server}/slow.jpg")
    assert time.monotonic() - started < 2
    with pytest.raises(UrlRefused, match="HTTP 404"):
        fetcher(allow_loopback=True).fetch(f"{server}/missing.jpg")
