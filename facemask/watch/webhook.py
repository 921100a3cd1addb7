"""Events POSTed to a webhook from a thread of its own."""
from __future__ import annotations

import http.client
import logging
import queue
import threading
import time

from facemask.watch.delivery import DeliveryJournal, post_json, record_key
from facemask.watch.metrics import WatchMetrics
from facemask.watch.options import WatchOptions

log = logging.getLogger("facemask.watch")
STOPPED = "stopped"  # an event still being tried when the watch stopped: neither sent nor given up


class WebhookSender:
    """POSTs events (JSON) to a URL from a thread of its own, in order, so a slow or dead receiver never holds up
    the video. Each attempt has webhook_timeout_s in all (a receiver that trickles its answer cannot stretch it);
    each event is retried with exponential backoff until it is delivered or webhook_give_up_s old. While one is
    retried the others wait behind it in a bounded queue; an event that finds the queue full is dropped, logged and
    counted. With a journal (the watch has an events file), what became of each event is written down, and the
    events still waiting, or dropped, are queued again when the watch starts. Every request carries the event id as
    Idempotency-Key (`<id>:end` for its end record): a receiver that answers after the time-out may get a record
    again, and can tell it by that key."""

    def __init__(self, url: str, options: WatchOptions, metrics: WatchMetrics,
                 journal: DeliveryJournal | None = None):
        self.url, self.options, self.metrics, self.journal = url, options, metrics, journal
        self.queue: queue.Queue = queue.Queue(maxsize=options.webhook_queue)
        self.sent = self.failed = self.dropped = 0
        self._stop_at: float | None = None
        if journal is not None:
            self._requeue(journal)
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def _requeue(self, journal: DeliveryJournal) -> None:
        """The events of earlier runs not delivered yet, queued first, their age counted towards the give-up."""
        pending = journal.pending(self.options.webhook_give_up_s)
        now = time.monotonic()
        for event, age_s in pending[:self.options.webhook_queue]:
            self.queue.put_nowait((now - age_s, event))
        if pending:
            later = max(0, len(pending) - self.options.webhook_queue)
            log.warning("webhook: %d event record(s) still to deliver from the events file%s", len(pending),
                        f" ({later} wait for a later start: the queue holds {self.options.webhook_queue})"
                        if later else "")

    def submit(self, event: dict) -> None:
        try:
            self.queue.put_nowait((time.monotonic(), event))
        except queue.Full:
            self.dropped += 1
            self.metrics.event("dropped")
            log.warning("webhook queue full (%d events): event %s dropped (kept in the events file%s)",
                        self.options.webhook_queue, record_key(event),
                        "; sent after the next start" if self.journal is not None else "")

    def _stopping(self) -> bool:
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    def _run(self) -> None:
        while not (self._stop_at is not None and (self.queue.empty() or self._stopping())):
            try:
                queued_at, event = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            outcome = self._deliver(queued_at, event)
            if outcome == STOPPED:
                continue  # still to deliver: the next start sends it again (with a journal)
            if outcome == "sent":
                self.sent += 1
            else:
                self.failed += 1
            self.metrics.event(outcome)
            if self.journal is not None:
                try:
                    self.journal.record(record_key(event), outcome)
                except OSError as error:  # a full disk: the event may be sent again after a restart, not lost
                    log.error("webhook: cannot note event %s as %s: %s", record_key(event), outcome, error)

    def _deliver(self, queued_at: float, event: dict) -> str:
        pause, tries, timeout = self.options.webhook_retry_min_s, 0, self.options.webhook_timeout_s
        while True:
            tries += 1
            try:
                status = post_json(self.url, event, {"Idempotency-Key": record_key(event)}, timeout)
                if status < 300:
                    if tries > 1:
                        log.info("webhook: event %s delivered after %d tries", record_key(event), tries)
                    return "sent"
                error = f"HTTP {status}"
                if 400 <= status < 500 and status not in (408, 429):
                    log.error("webhook refused event %s (%s): not retried", record_key(event), error)
                    return "failed"
            except TimeoutError as failure:  # the attempt's deadline (DeadlineExceeded) or the connect's
                error = str(failure) or type(failure).__name__
            except (OSError, http.client.HTTPException, ValueError) as failure:
                error = type(failure).__name__
            if tries == 1:
                log.warning("webhook: event %s not delivered (%s); retrying with backoff", record_key(event), error)
            if self._stopping():
                return STOPPED
            waited = time.monotonic() - queued_at
            if waited + pause > self.options.webhook_give_up_s:
                log.error("webhook: event %s given up after %d tries in %.0f s (%s); it is in the events file",
                          record_key(event), tries, waited, error)
                return "failed"
            time.sleep(pause)
            pause = min(pause * 2, self.options.webhook_retry_max_s)

    def close(self, drain_s: float = 5.0) -> None:
        """Give the queue drain_s to empty, then stop; what is left is logged (it is in the events file)."""
        self._stop_at = time.monotonic() + drain_s
        self.thread.join(drain_s + self.options.webhook_timeout_s + 1.0)
        if self.queue.qsize():
            log.warning("webhook: %d event(s) not delivered at shutdown (they are in the events file%s)",
                        self.queue.qsize(), "; sent after the next start" if self.journal is not None else "")
