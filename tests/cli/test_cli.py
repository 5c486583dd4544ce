"""One command tree: every command's help, and the exit codes of the common failures, each
with a one-line message instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import (
    EXIT_BAD_INPUT,
    EXIT_MODEL_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    build_parser,
    main,
)
from tools.embedded.ports import free_port

pytestmark = pytest.mark.unit

COMMANDS = [
    "worker",
    "demo",
    "replay",
    "dump-events",
    "watch",
    "generate",
    "train",
    "export",
    "add-items",
    "models",
    "rollback",
    "retrain",
    "catalogue",
    "bench",
    "quality",
    "beyond",
    "perf-input",
    "chaos",
    "recovery",
]


def nextaction(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a fresh process whose environment has no NEXTACTION_*
    variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEXTACTION_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_failure(done: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    for phrase in phrases:
        assert phrase in done.stderr


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command}" in listed
    assert "Exit codes:" in listed
    parsed = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(parsed) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: nextaction {command}")


def test_a_worker_without_addresses_starts_nothing_and_says_what_to_set() -> None:
    done = nextaction("worker")
    assert_clean_failure(done, EXIT_USAGE, "NEXTACTION_KAFKA_BOOTSTRAP: not set", "--embedded")


def test_a_misspelt_setting_stops_any_command_with_a_suggestion() -> None:
    done = nextaction("worker", env={"NEXTACTION_TRITON_GRPC_ULR": "triton:8001"})
    assert_clean_failure(done, EXIT_USAGE, "did you mean NEXTACTION_TRITON_GRPC_URL?")


def test_an_unreachable_broker_is_reported_without_a_traceback(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "view", "ts": 1}) + "\n"
    )
    done = nextaction("replay", str(events), env={"NEXTACTION_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert_clean_failure(done, EXIT_UNREACHABLE, "nextaction replay:")


def test_replay_and_dump_need_a_broker_address(tmp_path: Path) -> None:
    assert_clean_failure(
        nextaction("dump-events", str(tmp_path / "x.jsonl")), EXIT_USAGE, "NEXTACTION_KAFKA_BOOTSTRAP"
    )
    assert_clean_failure(
        nextaction("watch", "--once", "--duration", "1"), EXIT_USAGE, "NEXTACTION_KAFKA_BOOTSTRAP"
    )


def test_a_missing_or_malformed_training_file_names_the_problem(tmp_path: Path) -> None:
    out = str(tmp_path / "ckpt")
    missing = nextaction("train", "--data", str(tmp_path / "missing.jsonl"), "--out", out)
    assert_clean_failure(missing, EXIT_BAD_INPUT, "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "e1"}\n')
    malformed = nextaction("train", "--data", str(bad), "--out", out)
    assert_clean_failure(malformed, EXIT_BAD_INPUT, "bad.jsonl:1:")


def test_a_checkpoint_of_an_older_model_is_refused_with_what_to_do(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "hparams.json").write_text(json.dumps({"model": {"retired_setting": 1}, "training": {}}))
    done = nextaction("export", "--checkpoint", str(checkpoint), "--repository", str(tmp_path / "repo"))
    assert_clean_failure(done, EXIT_MODEL_FAILED, "retrain")


def test_a_failed_demo_training_ends_the_demo_with_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tools.demo_model

    def failing(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1 if "train" in argv else 0)

    monkeypatch.setattr(tools.demo_model.subprocess, "run", failing)
    monkeypatch.setenv("NEXTACTION_MODEL_REPOSITORY", str(tmp_path / "repository"))
    from stream.settings import load_settings

    load_settings.cache_clear()
    try:
        assert main(["demo"]) == EXIT_MODEL_FAILED
    finally:
        load_settings.cache_clear()
    assert "`nextaction train` for the demo model failed with exit code 1" in capsys.readouterr().err
