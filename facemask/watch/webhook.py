"""Events POSTed to a webhook from a thread of its own."""
from __future__ import annotations

import logging
import queue
import threading
import time

import requests

from facemask.watch.metrics import WatchMetrics
from facemask.watch.options import WatchOptions

log = logging.getLogger("facemask.watch")


class WebhookSender:
    """POSTs events (JSON) to a URL from a thread of its own, in order, so a slow or dead receiver never holds up
    the video. Each event is retried with exponential backoff until it is delivered or webhook_give_up_s old;
    while one is retried the others wait behind it in a bounded queue, and an event that finds the queue full is
    dropped (it stays in the JSON Lines). Every request carries the event id as Idempotency-Key: a receiver that
    answers later than the timeout may get an event again, and can tell it by its id."""

    def __init__(self, url: str, options: WatchOptions, metrics: WatchMetrics):
        self.url, self.options, self.metrics = url, options, metrics
        self.queue: queue.Queue = queue.Queue(maxsize=options.webhook_queue)
        self.session = requests.Session()
        self.sent = self.failed = self.dropped = 0
        self._stop_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def submit(self, event: dict) -> None:
        try:
            self.queue.put_nowait((time.monotonic(), event))
        except queue.Full:
            self.dropped += 1
            self.metrics.event("dropped")
            log.warning("webhook queue full (%d events): event %s dropped (kept in the events file)",
                        self.options.webhook_queue, event["id"])

    def _stopping(self) -> bool:
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    def _run(self) -> None:
        while not (self._stop_at is not None and (self.queue.empty() or self._stopping())):
            try:
                queued_at, event = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            outcome = self._deliver(queued_at, event)
            if outcome == "sent":
                self.sent += 1
            else:
                self.failed += 1
            self.metrics.event(outcome)

    def _deliver(self, queued_at: float, event: dict) -> str:
        pause, tries, timeout = self.options.webhook_retry_min_s, 0, self.options.webhook_timeout_s
        while True:
            tries += 1
            try:
                response = self.session.post(self.url, json=event, timeout=(min(3.0, timeout), timeout),
                                             headers={"Idempotency-Key": event["id"]})
                if response.status_code < 300:
                    if tries > 1:
                        log.info("webhook: event %s delivered after %d tries", event["id"], tries)
                    return "sent"
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    log.error("webhook refused event %s (%s): not retried", event["id"], error)
                    return "failed"
            except requests.RequestException as failure:
                error = type(failure).__name__
            if tries == 1:
                log.warning("webhook: event %s not delivered (%s); retrying with backoff", event["id"], error)
            waited = time.monotonic() - queued_at
            if waited + pause > self.options.webhook_give_up_s or self._stopping():
                log.error("webhook: event %s given up after %d tries in %.0f s (%s); it is in the events file",
                          event["id"], tries, waited, error)
                return "failed"
            time.sleep(pause)
            pause = min(pause * 2, self.options.webhook_retry_max_s)

    def close(self, drain_s: float = 5.0) -> None:
        """Give the queue drain_s to empty, then stop; what is left is logged (it is in the events file)."""
        self._stop_at = time.monotonic() + drain_s
        self.thread.join(drain_s + self.options.webhook_timeout_s + 1.0)
        if self.queue.qsize():
            log.warning("webhook: %d event(s) not delivered at shutdown (they are in the events file)",
                        self.queue.qsize())
