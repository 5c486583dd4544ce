"""NEXTACTION_LOG_FORMAT=json: one JSON object per log line, tracebacks inside it."""

from __future__ import annotations

import io
import logging
import logging.config
import sys

import orjson
import pytest

from stream.log_format import JsonFormatter, format_startup_logs, logging_config

pytestmark = pytest.mark.unit


def test_a_record_with_an_exception_is_one_json_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        record = logging.getLogger("stream.test").makeRecord(
            "stream.test", logging.ERROR, __file__, 1, "batch %d failed", (7,), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "ERROR" and doc["logger"] == "stream.test"
    assert doc["message"] == "batch 7 failed"
    assert doc["time"].endswith("+00:00")
    assert "ValueError: broken\nacross lines" in doc["exception"]


def test_text_keeps_the_default_and_json_replaces_both_handlers_formatters() -> None:
    assert logging_config("text") is None
    config = logging_config("json")
    assert config is not None and config["merge"] is True
    stream = io.StringIO()
    formatter = config["formatters"]["colored"]
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": formatter},
            "handlers": {"out": {"class": "logging.StreamHandler", "stream": stream, "formatter": "json"}},
            "loggers": {"nextaction.format-test": {"handlers": ["out"], "level": "INFO", "propagate": False}},
        }
    )
    logging.getLogger("nextaction.format-test").info("hello %s", "there")
    assert orjson.loads(stream.getvalue())["message"] == "hello there"


def test_start_up_lines_before_the_worker_takes_over_are_json_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    kept = {other: other.formatter for other in root.handlers}  # pytest's own among them
    try:
        format_startup_logs("text")
        logging.getLogger("stream.test").warning("checked %s", "topics")
        format_startup_logs("json")
        logging.getLogger("stream.test").warning("model %s ready", "nextaction")
    finally:
        root.removeHandler(handler)
        for other, formatter in kept.items():
            other.setFormatter(formatter)
    text_line, json_line = stream.getvalue().splitlines()
    assert text_line == "checked topics"
    assert orjson.loads(json_line)["message"] == "model nextaction ready"
