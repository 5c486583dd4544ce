"""A minimal Faust worker for the recovery test: one changelog-backed table fed by one topic.

``python recovery_app.py BROKER_URL APP_ID DUMP_PATH`` runs it. Each message ``key -> value``
on topic ``<APP_ID>-updates`` is stored in the table; each time table recovery completes, the
table is written to DUMP_PATH as JSON. That happens before the stream resumes, so the dump is
exactly what recovery restored.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import faust

from stream.settings import Settings
from stream.transports import register_transports


def build_app(broker_url: str, app_id: str, dump_path: Path, data_dir: Path) -> faust.App:
    register_transports(Settings())  # BROKER_URL's scheme picks the lean or the Tansu transport
    app = faust.App(
        app_id,
        broker=broker_url,
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=1,
        # Tansu needs acks=1 and short group timeouts: a join takes about half the session
        # timeout, and the restarted worker's join waits out the stopped one's session. The
        # product uses 6 s; 2 s keeps this test at a few seconds per worker.
        producer_acks=1,
        broker_session_timeout=2,
        broker_heartbeat_interval=0.5,
        # Changelog records then leave in multi-record batches, where Tansu's ListOffsets
        # under-reports.
        producer_linger=0.05,
        web_enabled=False,
        autodiscover=False,
    )
    # internal: the worker creates the topic with one partition, as the table's changelog has.
    updates = app.topic(
        f"{app_id}-updates",
        key_type=str,
        value_type=int,
        value_serializer="json",
        partitions=1,
        internal=True,
    )
    table = app.Table("state", default=int, partitions=1)

    @app.agent(updates)
    async def store(stream: faust.StreamT[int]) -> None:
        async for key, value in stream.items():
            table[key] = value

    @table.on_recover
    async def dump() -> None:
        staged = dump_path.with_suffix(".tmp")
        staged.write_text(json.dumps(dict(table.items())))
        staged.replace(dump_path)  # the test never reads a half-written dump

    return app


def main() -> None:
    broker_url, app_id, dump_path = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="recovery-app-") as data_dir:
        app = build_app(broker_url, app_id, Path(dump_path), Path(data_dir))
        faust.Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main()
