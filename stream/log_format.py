"""The worker's log lines as text or as JSON (``NEXTACTION_LOG_FORMAT``): one JSON object per
line, with time, level, logger, message and any exception's traceback, for log collectors
that would otherwise split a traceback into many records."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["JsonFormatter", "LogFormat", "format_startup_logs", "logging_config"]

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def format_startup_logs(log_format: LogFormat) -> None:
    """The lines logged before mode's worker takes over logging (start-up checks, topics, the
    model's shape) in the same format as the rest."""
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())


def logging_config(log_format: LogFormat) -> dict[str, Any] | None:
    """What mode's worker merges into its logging setup: None keeps its text lines; json
    replaces the formatters of both its handlers (the terminal's and a log file's)."""
    if log_format == "text":
        return None
    json_formatter = {"()": f"{__name__}.JsonFormatter"}
    return {"merge": True, "formatters": {"default": json_formatter, "colored": json_formatter}}
