"""The model commands of the CLI: generate, train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
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


def test_train_on_user_lines_reports_model_and_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "".join(f"{u} {' '.join(str((u + n) % 9) for n in range(6))}\n" for u in range(12))
    (tmp_path / "lines.txt").write_text(lines)
    out = tmp_path / "checkpoint"
    argv = ["train", "--data", str(tmp_path / "lines.txt"), "--format", "user-lines", "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--window", "4", "--hidden", "8", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"model", "popularity", "transition"}
    # No user ever returns to an item here, so the model learns and serves unseen items only.
    assert metrics["repeat_share"] == 0 and metrics["exclude_seen"] is True
    for result in metrics["results"].values():
        assert result["validation"]["users"] == result["test"]["users"] == 12
        assert {"hr@5", "ndcg@20", "coverage@10", "long_tail@10"} <= result["test"].keys()
    # Every user's next item is its last item + 1 (mod 9): the transition baseline gets it.
    assert metrics["results"]["transition"]["test"]["hr@5"] == 1.0
    assert (out / "training_curve.png").exists() and (out / "weights.pt").exists()
    # The student distilled from the teacher, or the teacher, whichever validated better.
    race = metrics["distillation_race"]
    kept = "student" if race["student"] > race["teacher"] else "teacher"
    assert f"{kept} kept: validation NDCG@10" in capsys.readouterr().out

    assert (
        main([*argv, "--epochs", "1", "--window", "4", "--hidden", "8", "--quiet", "--distillation", "0"])
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["distillation_race"] is None
    assert "kept: validation" not in capsys.readouterr().out
