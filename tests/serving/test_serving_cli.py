"""The serving command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.cli import main
from serving.data import read_events_jsonl

pytestmark = pytest.mark.unit


def test_generate_writes_events_and_planted_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, pairs = tmp_path / "events.jsonl", tmp_path / "pairs.json"
    argv = ["generate", "--out", str(out), "--users", "20", "--items", "60", "--seed", "5"]
    assert main([*argv, "--pairs-out", str(pairs)]) == 0
    events = list(read_events_jsonl(out))
    assert len({e["user_id"] for e in events}) == 20
    assert f"wrote {len(events)} events" in capsys.readouterr().out
    assert json.loads(pairs.read_text())


def test_train_rejects_an_unknown_data_format(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "x.csv"), "--format", "csv", "--out", str(tmp_path)])
