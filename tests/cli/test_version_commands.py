"""The lifecycle commands of the CLI: models, rollback, and export's gate. No torch runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from cli.main import EXIT_MODEL_FAILED, EXIT_OK, EXIT_USAGE, main
from tests.serving.version_folders import make_version

pytestmark = pytest.mark.unit


def test_models_lists_versions_and_the_served_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_version(tmp_path / "nextaction", 1, 0.2, created="2026-11-29T10:00:00+00:00")
    make_version(tmp_path / "nextaction", 2, 0.3)
    assert main(["models", "--repository", str(tmp_path), "--json"]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert listed["served"] == 2 and [v["served"] for v in listed["versions"]] == [False, True]
    assert listed["versions"][0]["validation"]["ndcg@10"] == 0.2
    assert main(["models", "--repository", str(tmp_path)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert "2026-11-29T10:00:00+00:00" in lines[0] and "NDCG@10 0.2000" in lines[0]
    assert lines[1].endswith("<- served")


def test_rollback_prints_what_it_did_and_refuses_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_version(tmp_path / "nextaction", 1, 0.2)
    assert main(["rollback", "--repository", str(tmp_path)]) == EXIT_USAGE
    assert "no earlier version" in capsys.readouterr().err
    make_version(tmp_path / "nextaction", 2, 0.1)
    assert main(["rollback", "--repository", str(tmp_path)]) == EXIT_OK
    assert "rolled back from version 2 to the content of version 1: published as version 3" in (
        capsys.readouterr().out
    )


def test_export_below_the_served_version_is_refused_naming_both_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_version(tmp_path / "nextaction", 1, 0.3)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "hparams.json").write_text("{}")
    validation = {"hr@10": 0.4, "ndcg@10": 0.25, "users": 100}
    metrics = {"results": {"model": {"validation": validation}}, "data": {"fingerprint": "fp1"}}
    (checkpoint / "metrics.json").write_text(json.dumps(metrics))
    argv = ["export", "--checkpoint", str(checkpoint), "--repository", str(tmp_path)]
    assert main(argv) == EXIT_MODEL_FAILED
    err = capsys.readouterr().err
    assert "GateRefused" in err and "NDCG@10 0.2500" in err and "NDCG@10 0.3000" in err
    assert "same data" in err and "--force" in err
    assert [p.name for p in (tmp_path / "nextaction").iterdir()] == ["1"]


class _PassesFail(Exception):
    pass


class _Stop(BaseException):
    pass


def test_following_the_catalogue_outlives_failed_passes_but_not_ten_in_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import version_commands

    monkeypatch.setenv("NEXTACTION_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    outcomes = iter([_PassesFail("broker away"), _PassesFail("again"), None, _Stop()])

    def one_pass(*_: object) -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(version_commands, "_catalogue_pass", one_pass)
    monkeypatch.setattr(version_commands.time, "sleep", lambda _: None)
    argv = ["catalogue", "--repository", str(tmp_path), "--follow"]
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(_Stop):  # the fourth pass: it went on after two failures and a success
        main(argv)
    assert signal.getsignal(signal.SIGTERM) is before  # its own handler only while it runs
    err = capsys.readouterr().err
    assert "failed (1 in a row): _PassesFail('broker away')" in err and "failed (2 in a row)" in err

    def always_fails(*_: object) -> None:
        raise _PassesFail("down for good")

    monkeypatch.setattr(version_commands, "_catalogue_pass", always_fails)
    with pytest.raises(_PassesFail):  # the tenth failure in a row ends it
        main(argv)
    err = capsys.readouterr().err
    assert "failed (9 in a row)" in err and "failed (10 in a row)" not in err
    with pytest.raises(_PassesFail):  # a single pass does not retry
        main(argv[:-1])
    assert "in a row" not in capsys.readouterr().err
