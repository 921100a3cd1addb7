"""Ctrl-C and SIGTERM as a request to stop: a video run, the command line's or the watch's, finishes its files."""
from __future__ import annotations

import signal
import threading


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received` (the run then finishes its files and stops)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self.number: int | None = None
        self._previous = {}

    def _handle(self, number, _frame):
        self.received, self.number = signal.Signals(number).name, number

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
