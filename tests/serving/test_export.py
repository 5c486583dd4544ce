"""ONNX export into a Triton repository, and the exported version run by NextActionPredictor."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from serving_fixtures import PlantedCases, item_of, triton_batch

import contract
from serving import export as export_module
from serving.checkpoint import Checkpoint, load_checkpoint
from serving.data import encode_windows
from serving.model import NextActionModel
from serving.serving_module import ServingModule
from serving.triton_backend import NextActionPredictor
from serving.triton_config import SERVED_TOP_K

pytestmark = pytest.mark.model

WINDOW, TOP_K = 50, SERVED_TOP_K


@pytest.fixture(scope="module")
def predictor(version_dir: Path) -> NextActionPredictor:
    return NextActionPredictor(version_dir)


def test_version_directory_holds_the_backend_and_its_data(version_dir: Path) -> None:
    assert version_dir.name.isdigit()
    names = {p.name for p in version_dir.iterdir()}
    assert {"model.onnx", "native.onnx", "vocab.json", "model.py", "contract.py", "manifest.json"} <= names
    backend = Path(export_module.__file__).with_name("triton_backend.py")
    assert (version_dir / "model.py").read_text() == backend.read_text()
    # The backend imports the contract it was exported with, not whatever is installed.
    assert (version_dir / "contract.py").read_text() == Path(contract.__file__).read_text()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert (manifest["window"], manifest["top_k"], manifest["explain_positions"]) == (WINDOW, TOP_K, 8)
    assert manifest["onnx_max_abs_diff"]["scores"] <= export_module.SCORE_TOLERANCE
    assert manifest["training_metrics"]["hr@10"] > 0
    # Where it came from, for `nextaction models`, the gate and a retrain's warm start.
    assert len(manifest["data"]["fingerprint"]) == 64 and manifest["data"]["newest_event_ms"] > 0
    assert manifest["validation"]["ndcg@10"] > 0 and manifest["created"] and manifest["code_revision"]
    assert {p.name for p in (version_dir / "checkpoint").iterdir()} >= {"weights.pt", "metrics.json"}


def test_configs_share_tensors_and_differ_in_device(version_dir: Path) -> None:
    cpu = (version_dir.parent / "config.pbtxt").read_text()
    gpu = (version_dir.parent / "configs" / "gpu.pbtxt").read_text()
    assert "max_batch_size: 16" in cpu and "max_batch_size: 64" in gpu
    for text in (cpu, gpu):
        assert "version_policy: { latest { num_versions: 1 } }" in text
        assert f'{{ name: "ATTRIBUTIONS" data_type: TYPE_FP32 dims: [ {TOP_K}, {WINDOW} ] }}' in text
        assert '{ name: "ITEM_IDS" data_type: TYPE_STRING dims: [ 50 ] }' in text
    assert 'backend: "python"' in cpu and "KIND_CPU" in cpu and "tensorrt" not in cpu
    # The stock container's onnxruntime backend serves the wrapped graph on the GPU.
    assert 'platform: "onnxruntime_onnx"' in gpu and 'default_model_filename: "native.onnx"' in gpu
    assert "KIND_GPU" in gpu and 'name: "tensorrt"' in gpu

    def tensors(text: str) -> str:
        return text[text.index("input [") : text.index("dynamic_batching")]

    # That backend takes no optional input when it batches: the only difference.
    assert tensors(cpu).replace(" optional: true", "") == tensors(gpu) != tensors(cpu)


def test_each_export_adds_the_next_version_and_a_failed_one_adds_nothing(
    checkpoint_dir: Path, version_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = version_dir.parent
    second = export_module.export(checkpoint_dir, model_dir.parent, served_top_k=5)
    assert int(second.name) == int(version_dir.name) + 1
    assert "dims: [ 5, 50 ]" in (model_dir / "config.pbtxt").read_text()

    def broken(*args: object) -> dict[str, float]:
        raise export_module.ExportError("simulated")

    monkeypatch.setattr(export_module, "_export_onnx", broken)
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(export_module.ExportError):
        export_module.export(checkpoint_dir, model_dir.parent)
    assert sorted(p.name for p in model_dir.iterdir()) == before


@pytest.mark.parametrize("short", [False, True], ids=["any-length", "short-windows"])
def test_predictor_matches_the_torch_model(
    predictor: NextActionPredictor, checkpoint: Checkpoint, planted: dict[str, PlantedCases], short: bool
) -> None:
    cases = planted["cart"].windows[:100] + planted["pair"].windows[:100]
    if short:
        cases = [case for case in cases if len(case.items) <= WINDOW // 2]
    batch = triton_batch(cases, WINDOW)
    # Short windows leave columns that are padding in every row: the predictor cuts them,
    # while torch below runs the whole width.
    padding_columns = (batch.item_ids == "").all(axis=0).sum()
    assert (len(cases) >= 20 and padding_columns >= WINDOW // 2) if short else len(cases) == 200
    items, served = predictor.predict(batch.item_ids, batch.actions, batch.timestamps_ms)

    module = ServingModule(checkpoint.model, top_k=TOP_K).eval()
    with torch.no_grad():
        expected = module(*(torch.from_numpy(a) for a in encode_windows(cases, checkpoint.vocab, WINDOW)))
    names = np.array([[item_of(checkpoint.vocab, int(i)) for i in row] for row in expected.top_indices])
    np.testing.assert_allclose(served.scores, expected.top_scores.numpy(), atol=1e-5)
    # Items whose scores tie within float rounding may swap places between the runtimes; such
    # rows are checked for that and left out of the per-rank comparisons below.
    swapped = (items != names).any(axis=1)
    assert swapped.mean() < 0.02
    for row, rank in zip(*np.nonzero(items != names), strict=True):
        row_scores = expected.top_scores[row].numpy()
        neighbours = row_scores[max(rank - 1, 0) : rank + 2]
        assert np.any(np.abs(np.delete(neighbours, rank - max(rank - 1, 0)) - row_scores[rank]) < 1e-5)
    keep = ~swapped
    np.testing.assert_allclose(served.attributions[keep], expected.attributions.numpy()[keep], atol=2e-3)
    np.testing.assert_allclose(served.similarities[keep], expected.similarities.numpy()[keep], atol=1e-4)
    np.testing.assert_array_equal(served.popularity[keep], expected.popularity.numpy()[keep])
    assert np.mean(served.signals[keep] != expected.signals.numpy()[keep]) < 1e-3
    np.testing.assert_allclose(served.item_actions[keep], expected.item_actions.numpy()[keep], atol=2e-3)
    for name in ("next_actions", "action_attributions"):  # per window, not per item
        np.testing.assert_allclose(getattr(served, name), getattr(expected, name).numpy(), atol=2e-3)
    seconds = np.log1p(served.gap_quantiles), np.log1p(expected.gap_quantiles.numpy())
    np.testing.assert_allclose(*seconds, atol=1e-4)
    assert items.shape == (len(cases), TOP_K) and served.attributions.shape == (len(cases), TOP_K, WINDOW)
    assert served.scores.dtype == np.float32 and served.attributions.dtype == np.float32


def test_unknown_items_and_padding(predictor: NextActionPredictor) -> None:
    known = predictor.item_ids(np.arange(2, 6))  # four known items
    item_ids = np.full((3, WINDOW), "", dtype=object)
    item_ids[0, -3:] = [known[0], "never-seen", known[1]]
    item_ids[1, -3:] = [known[0], "another-unseen", known[1]]
    item_ids[2, -1:] = [known[2].encode()]  # Triton hands over bytes
    actions = np.where(item_ids != "", 1, 0).astype(np.int32)
    timestamps = np.where(item_ids != "", 1_700_000_000_000 + np.arange(WINDOW) * 1000, 0)
    top_items, served = predictor.predict(item_ids, actions, timestamps)
    scores, attributions = served.scores, served.attributions
    # Both unseen ids are the same unknown item to the model.
    np.testing.assert_array_equal(top_items[0], top_items[1])
    np.testing.assert_allclose(scores[0], scores[1])
    assert not ({"<pad>", "<unknown>"} & set(top_items.ravel()))
    assert np.all(attributions[:, :, : WINDOW - 3] == 0)  # pads
    assert np.all(attributions[2, :, :-1] == 0)
    sums = attributions.sum(axis=-1)
    assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: (b[0][:, :-1], b[1][:, :-1], b[2][:, :-1]), "shape"),
        (lambda b: (b[0], np.full_like(b[1], 9), b[2]), "codes"),
        (lambda b: (b[0], np.zeros_like(b[1]), b[2]), "padding mismatch"),
    ],
)
def test_predictor_rejects_malformed_windows(
    predictor: NextActionPredictor,
    change: Callable[[tuple[np.ndarray, ...]], tuple[np.ndarray, ...]],
    message: str,
) -> None:
    item_ids = np.full((2, WINDOW), predictor.item_ids(np.array([2]))[0], dtype=object)
    actions = np.ones((2, WINDOW), dtype=np.int32)
    timestamps = np.arange(2 * WINDOW, dtype=np.int64).reshape(2, WINDOW)
    with pytest.raises(ValueError, match=message):
        predictor.predict(*change((item_ids, actions, timestamps)))


def test_a_checkpoint_of_an_older_model_version_is_refused_with_what_to_do(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    """Checkpoints from before the embedding normalisation name GPT-2's attention kernel;
    those from before averaged networks hold one network's weights at the top level."""
    old = tmp_path / "old-checkpoint"
    shutil.copytree(checkpoint_dir, old)
    hparams = json.loads((old / "hparams.json").read_text())
    hparams["model"]["attn_implementation"] = "sdpa"
    (old / "hparams.json").write_text(json.dumps(hparams))
    with pytest.raises(ValueError, match=r"older model version.*retrain"):
        load_checkpoint(old)
    del hparams["model"]["attn_implementation"]
    (old / "hparams.json").write_text(json.dumps(hparams))
    weights = torch.load(old / "weights.pt", weights_only=True)
    torch.save({k.removeprefix("networks.0."): v for k, v in weights.items()}, old / "weights.pt")
    with pytest.raises(ValueError, match=r"older model version.*retrain"):
        load_checkpoint(old)


def test_the_transition_prior_is_in_the_exported_graph(checkpoint: Checkpoint, tmp_path: Path) -> None:
    model = NextActionModel(checkpoint.model.config)
    model.load_state_dict(checkpoint.model.state_dict())
    successors = torch.randint(2, model.config.n_items, model.successor_items.shape)
    model.set_transition_prior(successors, torch.randint(0, 50, successors.shape), weight=3.0)
    module = ServingModule(model, top_k=TOP_K).eval()
    windows = export_module._sample_inputs(4, WINDOW, model.config.n_items, seed=5)
    with torch.no_grad():
        with_prior = module(*windows)[0]
        without_prior = ServingModule(checkpoint.model, top_k=TOP_K).eval()(*windows)[0]
    assert not torch.equal(with_prior, without_prior)  # the prior changes the ranking
    # The export compares ONNX Runtime with torch and raises on any top-k difference.
    diffs = export_module._export_onnx(module, WINDOW, model.config.n_items, tmp_path / "model.onnx")
    assert diffs["scores"] <= export_module.SCORE_TOLERANCE


def test_tied_items_may_swap_places_between_runtimes_and_nothing_else_may() -> None:
    expected = np.array([[7, 3, 9], [4, 5, 6]])
    scores = np.array([[0.5, 0.2, 0.1], [0.3, 0.3 - export_module.SCORE_TOLERANCE / 2, 0.1]])
    assert export_module.ranked_alike(expected.copy(), expected, scores, 50).tolist() == [True, True]

    tie_swapped = np.array([[7, 3, 9], [5, 4, 6]])
    assert export_module.ranked_alike(tie_swapped, expected, scores, 50).tolist() == [True, False]
    # The last place may go to an item past the list (the score check then judges its score).
    last_replaced = np.array([[7, 3, 2], [4, 5, 6]])
    assert export_module.ranked_alike(last_replaced, expected, scores, 50).tolist() == [False, True]

    clear_swap = np.array([[3, 7, 9], [4, 5, 6]])
    with pytest.raises(export_module.ExportError, match=r"at width 50: window 0, place 0, item 3 against 7"):
        export_module.ranked_alike(clear_swap, expected, scores, 50)
