"""Structured JSON logs for the API, without personal data.

Customer ids never appear in logs: `customer_ref` is an unsalted short SHA-256, stable across processes, enough to
correlate the lines of one customer without storing who they are. Request bodies are never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from journey.settings import Settings

# Attributes every LogRecord has; anything else passed through `extra=` becomes a JSON field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
ACCESS_LOGGER = "parcours.access"


def customer_ref(customer_id: str) -> str:
    """A short, non-reversible reference to a customer for log correlation."""
    return hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(settings: Settings, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and parcours: JSON (or text) on stderr."""
    text = {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    formatter: dict[str, Any] = {"()": JsonFormatter} if settings.log_format == "json" else text
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            # uvicorn's own access log prints client addresses and query strings: replaced by parcours.access
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "serving": {"handlers": ["default"], "level": level, "propagate": False},
            "journey": {"handlers": ["default"], "level": level, "propagate": False},
            ACCESS_LOGGER: {"handlers": ["default"], "level": level, "propagate": False},
        },
    }


def configure(settings: Settings, level: str = "INFO") -> None:
    """Apply `log_config` in this process (uvicorn applies it itself in each worker)."""
    import logging.config

    logging.config.dictConfig(log_config(settings, level))
