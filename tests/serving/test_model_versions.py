"""Versions of a repository: listing, roll-back as a new highest version, and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract import OUTPUTS
from serving import model_versions
from serving.model_versions import (
    RollbackError,
    StaleVersionError,
    list_versions,
    publish_version,
    rollback,
    served_version,
    staging_dir,
)
from serving.quality_gate import GateFigures, GateRefused, check_gate
from serving.triton_config import CONFIG_FILES, OUTPUTS_BEFORE_NEXT_EVENT
from tests.serving.version_folders import make_version

pytestmark = pytest.mark.unit


def test_versions_are_listed_lowest_first_and_the_highest_is_served(tmp_path: Path) -> None:
    model_dir = tmp_path / "nextaction"
    for number in (2, 10, 1):
        make_version(model_dir, number, 0.1)
    (model_dir / ".export-abc").mkdir()  # a staging folder is no version
    assert [v.number for v in list_versions(model_dir)] == [1, 2, 10]
    served = served_version(model_dir)
    assert served is not None and served.number == 10
    assert served.summary()["data_fingerprint"] == "fp10"


def test_rollback_publishes_the_previous_content_as_a_new_highest_version(tmp_path: Path) -> None:
    model_dir = tmp_path / "nextaction"
    make_version(model_dir, 1, 0.2, window=30)
    make_version(model_dir, 2, 0.1)
    served, target, version_dir = rollback(model_dir)
    assert (served.number, target.number, version_dir.name) == (2, 1, "3")
    assert (version_dir / "model.onnx").read_bytes() == b"graph 1"
    assert (version_dir / "checkpoint" / "weights.pt").read_bytes() == b"weights 1"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert (manifest["version"], manifest["copy_of"], manifest["rolled_back_from"]) == (3, 1, 2)
    # The configs fit the version served now: version 1's window.
    assert "dims: [ 30 ]" in (model_dir / "config.pbtxt").read_text()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no staging left
    # Rolling back again skips what was rolled back from and what is served.
    with pytest.raises(RollbackError, match="no earlier version"):
        rollback(model_dir)


def test_rollback_to_a_named_version_and_its_refusals(tmp_path: Path) -> None:
    model_dir = tmp_path / "nextaction"
    for number in (1, 2, 3):
        make_version(model_dir, number, 0.1)
    with pytest.raises(RollbackError, match="no version 7"):
        rollback(model_dir, to=7)
    with pytest.raises(RollbackError, match="already serves"):
        rollback(model_dir, to=3)
    _, target, version_dir = rollback(model_dir, to=1)
    assert (target.number, version_dir.name) == (1, "4")
    with pytest.raises(RollbackError, match="no versions"):
        rollback(tmp_path / "empty")


def test_a_publisher_that_loses_the_race_for_a_number_takes_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "nextaction"
    make_version(model_dir, 1, 0.1)
    staging = staging_dir(model_dir, ".export-")
    (staging / "model.onnx").write_bytes(b"mine")
    listings = iter([[], list_versions(model_dir)])  # the first look predates version 1
    monkeypatch.setattr(model_versions, "list_versions", lambda _: next(listings))
    manifest = {"model_name": "nextaction", "window": 50, "top_k": 20}
    version_dir = publish_version(staging, model_dir, manifest)
    assert version_dir.name == "2" and (version_dir / "model.onnx").read_bytes() == b"mine"
    assert json.loads((version_dir / "manifest.json").read_text())["version"] == 2
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"graph 1"  # the winner is untouched


def test_the_gate_names_both_figures_and_says_when_the_data_differs() -> None:
    served = GateFigures("version 3", {"hr@10": 0.5, "ndcg@10": 0.30}, "a")
    better = GateFigures("the checkpoint", {"hr@10": 0.6, "ndcg@10": 0.31}, "a")
    worse = GateFigures("the checkpoint", {"hr@10": 0.4, "ndcg@10": 0.2500}, "b")
    assert check_gate(better, served, force=False).startswith("gate passed")
    assert "same data" in check_gate(better, served, force=False)
    with pytest.raises(GateRefused, match=r"NDCG@10 0\.2500.*NDCG@10 0\.3000.*DIFFERENT data"):
        check_gate(worse, served, force=False)
    assert check_gate(worse, served, force=True).startswith("gate overridden by --force")
    with pytest.raises(GateRefused, match="required"):
        check_gate(better, served, force=False, min_gain=0.1)
    assert "nothing to compare" in check_gate(worse, None, force=False)


def test_a_version_built_on_one_that_is_no_longer_the_newest_is_not_published(tmp_path: Path) -> None:
    model_dir = tmp_path / "nextaction"
    make_version(model_dir, 1, 0.1)
    make_version(model_dir, 2, 0.1)  # a retrain published while a version was built on 1
    staging = staging_dir(model_dir, ".export-")
    manifest = {"model_name": "nextaction", "window": 50, "top_k": 20}
    with pytest.raises(StaleVersionError, match="version 2 was published while building on version 1"):
        publish_version(staging, model_dir, manifest, extends=1)
    assert [v.number for v in list_versions(model_dir)] == [1, 2]
    assert publish_version(staging, model_dir, manifest, extends=2).name == "3"


def test_configs_declare_the_outputs_of_the_version_served(tmp_path: Path) -> None:
    """A roll-back to a version exported before the next event's outputs writes configs without
    them (its own model.py refuses any others); rolling forward declares them again."""
    model_dir = tmp_path / "nextaction"
    make_version(model_dir, 1, 0.2)  # no "outputs" in its manifest: exported before they existed
    make_version(model_dir, 2, 0.1, outputs=[spec.name for spec in OUTPUTS])
    rollback(model_dir, to=1)
    for relative in CONFIG_FILES.values():
        config = (model_dir / relative).read_text()
        assert all(f'"{name}"' in config for name in OUTPUTS_BEFORE_NEXT_EVENT)
        assert '"NEXT_ACTIONS"' not in config and '"GAP_QUANTILES"' not in config
    rollback(model_dir, to=2)
    assert all(f'"{spec.name}"' in (model_dir / "config.pbtxt").read_text() for spec in OUTPUTS)
