"""Logs as one JSON object per line, each carrying the id of the request it was written for."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

# Set for the duration of a request by the thread serving it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# An incoming id is echoed into logs and headers, so only a short id of safe characters is
# taken from a client (no newlines, no quotes); anything else gets a fresh one.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# What a record carries in its __dict__ when it was made without ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def request_id_for(given: str | None) -> str:
    """The client's X-Request-Id when it is a valid one, else a new one."""
    if given is not None and _VALID_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the request id, and any fields passed with ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker process
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def json_logging_config() -> dict[str, object]:
    """gunicorn's ``logconfig_dict``: its loggers and ours through the JSON formatter."""
    # gunicorn merges this over its defaults one key deep, so the loggers are given whole: its
    # defaults give gunicorn.error a handler of its own besides the root's (every line twice),
    # and any logconfig_dict switches its access log on, beside ours that carries the request id.
    return {
        "formatters": {"generic": {"()": JsonFormatter}},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
