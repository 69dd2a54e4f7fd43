"""Structured logs: one JSON object per line, for the app's own loggers and uvicorn's."""

from __future__ import annotations

import json
import logging
import os
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
# The access log keeps no client address: corrections are stored with a salted hash of it, never the
# address, and a log line beside each POST /feedback would undo that.


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            fields = dict(zip(_ACCESS_FIELDS, record.args, strict=True))  # fields, not just a formatted line
            del fields["client"]
            entry["msg"] = '"{method} {path} HTTP/{http_version}" {status}'.format(**fields)
            entry.update(fields)
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for 'digits.*' and for uvicorn's server and access logs."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("digits", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            continue
        if name == "uvicorn.access" and not logger.handlers and not logger.propagate:
            continue  # uvicorn's --no-access-log (digits serve --no-access-log) left it so: it stays off
        logger.handlers = [handler] if name != "uvicorn.error" else []  # uvicorn.error propagates to uvicorn
        logger.propagate = name == "uvicorn.error"
    logging.getLogger("digits").setLevel(level)


# For `digits serve`: uvicorn's own start-up lines in JSON too, from the first one.
UVICORN_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
