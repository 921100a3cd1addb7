"""How the watch's webhook delivers one event and remembers what is still to deliver.

post_json: one POST whose time-out is a deadline for the whole attempt. requests' time-out applies to each read, so a
receiver that answered one byte every 2 s held an attempt with a 5 s time-out for minutes (issue 35); here a timer
shuts the socket down when the deadline passes, whatever the receiver is doing.

DeliveryJournal: the outcome of each event (sent, or given up) next to the events file, so that a restart sends
the events still waiting, or dropped from a full queue, instead of losing them.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

LOG = logging.getLogger("facemask.watch")
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer: only its status matters


class DeadlineExceeded(TimeoutError):
    """The attempt took longer than its deadline; the message says how long that was."""


def post_json(url: str, event: dict, headers: dict[str, str], deadline_s: float) -> int:
    """POST the event as JSON; the HTTP status. Raises DeadlineExceeded once deadline_s have passed since the start,
    however the receiver trickles its answer, and OSError (http.client.HTTPException) when the POST fails."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the webhook URL must be http:// or https://, got {parts.scheme}://")
    started = time.monotonic()
    body = json.dumps(event).encode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy, proxy_headers = proxy_for(parts)
    host = (proxy.hostname if proxy else parts.hostname) or ""
    port = (proxy.port or 80) if proxy else parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=deadline_s, context=ssl.create_default_context())
        if proxy:  # CONNECT through the proxy, then TLS with the receiver itself
            connection.set_tunnel(parts.hostname, parts.port, headers=proxy_headers)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=deadline_s)
        if proxy:  # a plain-HTTP proxy takes the whole URL as the request target
            path = url.split("#", 1)[0]
            headers = {**proxy_headers, **headers}
    expired = threading.Event()

    def cut() -> None:  # from the timer's thread: a blocked send or recv returns at once
        expired.set()
        if connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(deadline_s, cut)
    timer.daemon = True
    timer.start()
    try:
        connection.connect()
        if expired.is_set():  # the deadline passed while connecting: the timer found no socket to cut
            raise DeadlineExceeded(f"timed out after {deadline_s:g} s")
        connection.request("POST", path, body, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        return response.status
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set() or time.monotonic() - started >= deadline_s:
            raise DeadlineExceeded(f"timed out after {deadline_s:g} s") from None
        raise error
    finally:
        timer.cancel()
        connection.close()


def proxy_for(parts: SplitResult) -> tuple[SplitResult | None, dict[str, str]]:
    """The proxy that HTTP_PROXY / HTTPS_PROXY (and NO_PROXY) name for this URL, as requests and curl read them, and
    the Proxy-Authorization its user:password asks for; (None, {}) to go direct."""
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.netloc):
        return None, {}
    found = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not found.hostname:
        return None, {}
    if found.username is None:
        return found, {}
    credentials = f"{unquote(found.username)}:{unquote(found.password or '')}".encode()
    return found, {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode()}


def record_key(record: dict) -> str:
    """What tells one event record from every other, in the journal and as the webhook's Idempotency-Key: the
    event id for its start (and for the records of watches older than end records), `<id>:end` for its end."""
    return record["id"] + (":end" if record.get("type") == "end" else "")


class DeliveryJournal:
    """Each event record's final webhook outcome ("sent", or "failed": refused or given up), one JSON line per record
    (by record_key: an event's start and its end are two records), in <events file>.webhook. The events file is the
    queue: a record in it with no outcome is still to deliver."""

    def __init__(self, events_path: Path):
        self.events_path = events_path
        self.path = events_path.with_name(events_path.name + ".webhook")
        self.lock = threading.Lock()

    def record(self, key: str, outcome: str) -> None:
        line = json.dumps({"id": key, "outcome": outcome}) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def pending(self, give_up_s: float) -> list[tuple[dict, float]]:
        """(record, its age in seconds) of every record in the events file without an outcome, oldest first, no older
        than give_up_s (those would have been given up). The journal is rewritten with the outcomes still needed."""
        recent = [(event, age) for event, age in self._events() if age <= give_up_s]
        done = self._outcomes()
        kept = {record_key(event) for event, _ in recent} & set(done)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text("".join(json.dumps({"id": key, "outcome": done[key]}) + "\n" for key in sorted(kept)),
                             encoding="utf-8")
        os.replace(temporary, self.path)
        return [(event, age) for event, age in recent if record_key(event) not in done]

    def _events(self) -> list[tuple[dict, float]]:
        if not self.events_path.is_file():
            return []
        now, events = time.time(), []
        with open(self.events_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                    events.append((event, now - datetime.fromisoformat(event["time"]).timestamp()))
                    record_key(event)  # a line without an id is no record
                except (ValueError, KeyError, TypeError):  # a line cut by a kill mid-write
                    continue
        return events

    def _outcomes(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        outcomes = {}
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    outcomes[record["id"]] = record["outcome"]
                except (ValueError, KeyError, TypeError):
                    continue
        return outcomes
