"""A photo from a URL, fetched by the service for the upload page, without letting the page reach inside the network.

Only http(s) to public addresses: every host is resolved first and each of its addresses checked (loopback,
private, link-local, shared, reserved and multicast ranges are refused), then the connection goes to the address
that was checked, not to a second lookup (DNS rebinding). Redirects are followed by hand, each one checked the same
way before anything connects to it. The body obeys the upload limit and the whole fetch a short deadline.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import urllib3

from facemask.core.errors import FacemaskError

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
Resolver = Callable[[str, int], list[str]]


class UrlRefused(FacemaskError, ValueError):
    """The URL may not be fetched, or the fetch failed; the message is meant for the user."""


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (a name may have several; all must be public)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UrlRefused(f"The address {host} could not be found. Check the link and try again.") from None
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class PhotoFetcher:
    max_bytes: int
    timeout_s: float
    allow_loopback: bool = False  # tests only (URL_FETCH_ALLOW_LOOPBACK)
    resolver: Resolver = resolve

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_loopback and ip.is_loopback:
            return True
        return ip.is_global and not ip.is_multicast

    def checked_target(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host name, port, address to connect to) of a URL that may be fetched; UrlRefused otherwise.
        Nothing is connected to here."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UrlRefused("That is not a valid web address. Copy the whole address, with https://.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UrlRefused("Only http:// and https:// links to a photo can be fetched. Copy the photo's web address, "
                            "or download it and upload the file.")
        addresses = self.resolver(parts.hostname, port)
        refused = [address for address in addresses if not self.address_allowed(address)]
        if refused or not addresses:
            raise UrlRefused(f"{parts.hostname} is a local or private address ({', '.join(refused) or 'none'}): only "
                             "photos on the public internet can be fetched. Download the photo and upload it instead.")
        return parts.scheme, parts.hostname, port, addresses[0]

    def fetch(self, url: str) -> tuple[str, bytes]:
        """(file name, bytes) of the photo at url, redirects followed; UrlRefused says why not."""
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port, address = self.checked_target(url)
            response = self._get(scheme, host, port, address, url, deadline)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise UrlRefused(f"{host} answered with a redirect that leads nowhere.")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise UrlRefused(f"{host} answered HTTP {response.status}: check that the link opens the photo "
                                     "in a browser.")
                return _file_name(url), self._body(response, deadline)
            finally:
                response.release_conn()
        raise UrlRefused(f"More than {MAX_REDIRECTS} redirects: open the link in a browser and use the final address.")

    def _get(self, scheme: str, host: str, port: int, address: str, url: str, deadline: float):
        remaining = max(0.05, deadline - time.monotonic())
        timeout = urllib3.Timeout(connect=remaining, read=remaining)
        # The checked address, with the name in Host and (https) in SNI and the certificate check.
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1, server_hostname=host, assert_hostname=host) \
            if scheme == "https" else urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False,
                                                                 maxsize=1)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if scheme == "https" else 80
        headers = {"Host": host if port == default_port else f"{host}:{port}", "Accept": "image/*",
                   "User-Agent": "facemask-upload-page"}
        try:
            return pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False,
                                decode_content=True)
        except urllib3.exceptions.TimeoutError:
            raise UrlRefused(f"{host} did not answer within {self.timeout_s:g} s. Try again, or download the photo "
                             "and upload it.") from None
        except urllib3.exceptions.HTTPError as error:
            reason = "its certificate is not valid" if isinstance(error, urllib3.exceptions.SSLError) else \
                "the connection failed"
            raise UrlRefused(f"{host} could not be reached ({reason}). Check the link and try again.") from None

    def _body(self, response, deadline: float) -> bytes:
        too_large = UrlRefused(f"The photo is larger than the {self.max_bytes / 1e6:g} MB limit. Try a smaller one.")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        body = bytearray()
        try:
            for chunk in response.stream(CHUNK_BYTES):
                body += chunk
                if len(body) > self.max_bytes:
                    raise too_large
                if time.monotonic() > deadline:
                    raise UrlRefused(f"The photo took longer than {self.timeout_s:g} s to download. Try again, or "
                                     "download it and upload it.")
        except urllib3.exceptions.HTTPError:
            raise UrlRefused("The download broke off. Press Retry.") from None
        if not body:
            raise UrlRefused("The link gave an empty file. Check that it opens the photo itself.")
        return bytes(body)


def _file_name(url: str) -> str:
    parts = urlsplit(url)
    name = unquote(parts.path.rsplit("/", 1)[-1])
    return name or parts.hostname or "photo"
