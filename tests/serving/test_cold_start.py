"""Cold-start items: the text mapping, rows appended without moving known items, the command."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import EXIT_BAD_INPUT, main
from contract import FIRST_ITEM_INDEX
from serving import cold_start_checkpoint
from serving.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from serving.cold_start import ROW_SCALE, TextRows, add_item_rows, add_items
from serving.item_text import TextEncoder
from serving.model import ModelConfig, NextActionModel
from serving.text_mapping import MAPPING, TextMapping
from serving.vocab import ItemVocab

pytestmark = pytest.mark.unit

KNOWN = tuple(f"i{n}" for n in range(30))
TEXT_DIM = 16


class HashEncoder:
    """A stand-in for the sentence encoder: a fixed unit vector per text."""

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        vectors = np.stack(
            [
                np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(
                    size=TEXT_DIM
                )
                for t in texts
            ]
        )
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def tiny_checkpoint(networks: int = 2) -> Checkpoint:
    torch.manual_seed(0)
    config = ModelConfig(n_items=len(KNOWN) + FIRST_ITEM_INDEX, window=4, hidden=8, layers=1, heads=2)
    model = NextActionModel(ModelConfig(**{**config.to_dict(), "networks": networks, "successors": 3}))
    successors = torch.randint(FIRST_ITEM_INDEX, model.config.n_items, (model.config.n_items, 3))
    model.set_transition_prior(successors, torch.randint(0, 5, successors.shape), 1.0)
    metrics = {"history": [], "member_histories": []}
    return Checkpoint(model.eval(), ItemVocab(KNOWN), metrics)


def windows(n_items: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    items = torch.randint(FIRST_ITEM_INDEX, n_items, (6, 4), generator=torch.Generator().manual_seed(1))
    return items, torch.ones_like(items), torch.ones_like(items)


def test_the_mapping_recovers_a_linear_relation() -> None:
    rng = np.random.default_rng(0)
    truth, offset = rng.normal(size=(TEXT_DIM, 6)), rng.normal(size=6)
    text = rng.normal(size=(300, TEXT_DIM))
    mapping = TextMapping.fit(text, text @ truth + offset)
    unseen = rng.normal(size=(20, TEXT_DIM))
    np.testing.assert_allclose(mapping.predict(unseen), unseen @ truth + offset, atol=0.05)
    assert mapping.explained > 0.99


def test_the_mapping_survives_a_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    text = rng.normal(size=(40, TEXT_DIM))
    mapping = TextMapping.fit(text, rng.normal(size=(40, 4)))
    mapping.save(tmp_path / MAPPING)
    loaded = TextMapping.load(tmp_path / MAPPING)
    np.testing.assert_array_equal(loaded.predict(text), mapping.predict(text))
    assert (loaded.penalty, loaded.explained) == (mapping.penalty, mapping.explained)


@pytest.mark.parametrize("networks", [1, 2])
def test_added_rows_leave_known_items_alone_and_score(networks: int) -> None:
    before = tiny_checkpoint(networks)
    new_rows = np.random.default_rng(2).normal(size=(3, 8 * networks)).astype(np.float32)
    after = add_item_rows(before, TextRows(("n1", "n2", "n3"), new_rows))
    old_size = len(before.vocab)
    assert after.vocab.items == (*KNOWN, "n1", "n2", "n3")
    assert [after.vocab.index(i) for i in KNOWN] == [before.vocab.index(i) for i in KNOWN]
    assert after.model.config.n_items == old_size + 3
    assert torch.equal(after.model.successor_items[:old_size], before.model.successor_items)
    assert not after.model.successor_scores[old_size:].any()
    assert float(after.model.prior_weight) == float(before.model.prior_weight)
    with torch.no_grad():
        old = before.model.predict(*windows(old_size))
        new = after.model.predict(*windows(old_size))
        hidden = torch.cat(after.model.newest_hidden(*windows(old_size)), dim=1)
    torch.testing.assert_close(new[:, :old_size], old)
    expected = hidden @ torch.from_numpy(new_rows).T / networks
    torch.testing.assert_close(new[:, old_size:], expected)


def test_add_items_appends_unknown_items_only_in_the_given_order() -> None:
    before = tiny_checkpoint()
    encoder = HashEncoder()
    warm = {item: f"text of {item}" for item in KNOWN}
    text = encoder.encode(list(warm.values()))
    rows = np.concatenate([n.item_embedding.weight.detach().numpy() for n in before.model.item_networks], 1)
    mapping = TextMapping.fit(text, rows[FIRST_ITEM_INDEX:])
    texts = {"new-b": "a sequel", "i3": "ignored: known", "new-a": "a prequel"}
    after = add_items(before, texts, mapping, encoder, row_scale=1.5)  # type: ignore[arg-type]
    assert after.vocab.items == (*KNOWN, "new-b", "new-a")
    added = np.concatenate([n.item_embedding.weight.detach().numpy() for n in after.model.item_networks], 1)
    expected = 1.5 * mapping.predict(encoder.encode(["a sequel", "a prequel"]))
    np.testing.assert_allclose(added[-2:], expected, rtol=1e-6)
    assert add_items(after, {"new-a": "again"}, mapping, encoder) is after  # type: ignore[arg-type]


def write_items(path: Path, texts: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"item_id": k, "text": v}) + "\n" for k, v in texts.items()))
    return path


def test_the_command_adds_items_and_reuses_its_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cold_start_checkpoint, "TextEncoder", HashEncoder)
    save_checkpoint(tiny_checkpoint(), tmp_path / "trained", training={})
    catalogue = {item: f"text of {item}" for item in KNOWN} | {"new1": "brand new", "new2": "also new"}
    argv = ["add-items", "--checkpoint", str(tmp_path / "trained")]
    first = [*argv, "--items", str(write_items(tmp_path / "items.jsonl", catalogue))]
    assert main([*first, "--out", str(tmp_path / "added")]) == 0
    assert "added 2 item(s), 30 already known" in capsys.readouterr().out
    added = load_checkpoint(tmp_path / "added")
    assert added.vocab.items == (*KNOWN, "new1", "new2")
    assert added.metrics["cold_start"]["items_added"] == 2
    assert added.metrics["cold_start"]["row_scale"] == ROW_SCALE
    assert (tmp_path / "added" / MAPPING).is_file()

    later = ["add-items", "--checkpoint", str(tmp_path / "added")]
    later += ["--items", str(write_items(tmp_path / "later.jsonl", {"new3": "newer still"}))]
    assert main([*later, "--out", str(tmp_path / "again")]) == 0
    assert "reused from the checkpoint" in capsys.readouterr().out
    again = load_checkpoint(tmp_path / "again")
    assert again.vocab.items == (*KNOWN, "new1", "new2", "new3")
    assert again.metrics["cold_start"]["items_added"] == 3


def test_the_command_names_a_malformed_items_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cold_start_checkpoint, "TextEncoder", HashEncoder)
    save_checkpoint(tiny_checkpoint(), tmp_path / "trained", training={})
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "a", "text": "fine"}\n{"item_id": "b"}\n')
    argv = ["add-items", "--checkpoint", str(tmp_path / "trained"), "--items", str(items)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "items.jsonl:2:" in capsys.readouterr().err
    write_items(items, {"new": "only a new item"})
    assert main([*argv, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "texts of the items it knows" in capsys.readouterr().err


@pytest.mark.model
def test_the_packaged_encoder_loads_offline_and_places_related_texts_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = TextEncoder().encode(
        ["Toy Story. Genres: Animation, Comedy", "A Bug's Life. Genres: Animation, Comedy", "Alien. Horror"]
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
