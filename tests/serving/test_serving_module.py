"""ServingModule on a small untrained model: top-k rules and faithful occlusion attributions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from contract import PAD_INDEX, SIGNAL_CODES, UNKNOWN_INDEX
from serving.export import ATTRIBUTION_TOLERANCE
from serving.model import PRIOR_HISTORY, ModelConfig, NextActionModel
from serving.network import LowPass, decayed_sums, key_mask
from serving.next_event import gap_seconds, window_profile
from serving.serving_module import MIN_DROP, ServingModule

pytestmark = pytest.mark.unit

WINDOW, EXPLAIN, TOP_K = 8, 5, 4


@pytest.fixture(scope="module", params=[(1, 1), (2, 1), (2, 2)], ids=["1-layer", "2-layer", "2-networks"])
def model(request: pytest.FixtureRequest) -> NextActionModel:
    """Two depths (with more than one layer, reused keys and values feed later layers), and
    two networks whose scores are averaged."""
    layers, networks = request.param
    torch.manual_seed(0)
    config = ModelConfig(n_items=14, window=WINDOW, hidden=16, layers=layers, heads=2, successors=3)
    model = NextActionModel(replace(config, networks=networks))
    # Untrained embeddings are tiny (std 0.02); larger ones make scores depend on the inputs.
    with torch.no_grad():
        for network in model.item_networks:
            for embedding in (network.item_embedding, network.action_embedding, network.gap_embedding):
                embedding.weight.normal_(std=1.0)
                embedding.weight[0].zero_()
            # The low-pass branch on (0 at initialisation): occluded tails must continue its sums.
            network.lowpass_mix.normal_(std=1.0)
    # A transition prior with the weight of the embeddings' scale: occlusion must account for it.
    successors = torch.randint(UNKNOWN_INDEX + 1, 14, (14, 3))
    model.set_transition_prior(successors, torch.randint(0, 6, (14, 3)), weight=1.0)
    return model.eval()


def windows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three windows: full, short (pads on the left) and one with unknown items."""
    items = torch.tensor(
        [
            [2, 3, 4, 5, 6, 7, 8, 9],
            [0, 0, 0, 0, 0, 10, 11, 12],
            [0, 0, 1, 13, 1, 2, 3, 1],
        ]
    )
    actions = torch.where(items == PAD_INDEX, 0, (items % 4) + 1)
    gaps = torch.where(items == PAD_INDEX, 0, (items % 5) + 1)
    return items, actions, gaps


def test_the_trunk_loop_matches_gpt2s_own_forward_on_every_event(model: NextActionModel) -> None:
    items, actions, gaps = windows()
    positions = torch.arange(WINDOW)[None]
    network = model.item_networks[-1]
    with torch.no_grad():
        embedded, _ = network.embed(items, actions, gaps)
        ours = network.trunk.ln_f(network.layers(embedded, key_mask(items))[0])
        theirs = network.trunk(  # GPT-2 adds the position embeddings itself
            inputs_embeds=embedded - network.trunk.wpe(positions),
            attention_mask=key_mask(items).long(),
            position_ids=positions,
        ).last_hidden_state
    events = items != PAD_INDEX
    torch.testing.assert_close(ours[events], theirs[events], atol=1e-5, rtol=1e-5)


def test_low_pass_sums_halve_per_step_back_skip_pads_and_continue_from_a_carry() -> None:
    embeds = torch.tensor([[[5.0], [2.0], [4.0]]])  # [1, 3, 1]: a pad (5 is ignored), then 2, 4
    real = torch.tensor([[[0.0], [1.0], [1.0]]])
    sums, counts = decayed_sums(embeds, real)
    torch.testing.assert_close(sums[0, :, 0], torch.tensor([0.0, 2.0, 0.5 * 2.0 + 4.0]))
    torch.testing.assert_close(counts[0, :, 0], torch.tensor([0.0, 1.0, 1.5]))
    joined = decayed_sums(torch.cat([embeds, embeds], dim=1), torch.cat([real, real], dim=1))
    continued = decayed_sums(embeds, real, carry=LowPass(sums, counts))
    torch.testing.assert_close(continued.sums, joined.sums[:, 3:])
    torch.testing.assert_close(continued.counts, joined.counts[:, 3:])


def without(x: torch.Tensor, position: int) -> torch.Tensor:
    """Windows [N, W] with the event at ``position`` removed: older ones shift right, a pad
    enters on the left."""
    keep = [p for p in range(x.shape[1]) if p != position]
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, keep]], dim=1)


def test_without_removes_one_position_and_pads_left() -> None:
    np.testing.assert_array_equal(without(torch.tensor([[1, 2, 3, 4, 5]]), 3), [[0, 1, 2, 3, 5]])


def test_top_k_are_real_items_with_sorted_probabilities(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=12, explain_positions=EXPLAIN).eval()  # every known item
    with torch.no_grad():
        indices, scores, _ = module(*windows())[:3]
    assert indices.dtype == torch.int64 and scores.dtype == torch.float32
    assert not torch.isin(indices, torch.tensor([PAD_INDEX, UNKNOWN_INDEX])).any()
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(3))  # all known items: the whole mass


def test_attributions_are_normalised_drops_of_removing_each_event(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    with torch.no_grad():
        indices, _, attributions = module(items, actions, gaps)[:3]
        assert attributions.shape == (3, TOP_K, WINDOW)
        for row in range(3):
            base = torch.log_softmax(
                model.predict(items[row : row + 1], actions[row : row + 1], gaps[row : row + 1]), -1
            )
            drops = torch.zeros(TOP_K, WINDOW)
            for position in range(WINDOW - EXPLAIN, WINDOW):
                if items[row, position] == PAD_INDEX:
                    continue
                occluded = [without(t[row : row + 1], position) for t in (items, actions, gaps)]
                log_probs = torch.log_softmax(model.predict(*occluded), -1)
                drops[:, position] = base[0, indices[row]] - log_probs[0, indices[row]] - MIN_DROP
            drops = drops.clamp(min=0)
            totals = drops.sum(dim=1, keepdim=True)
            expected = torch.where(totals > 0, drops / totals, 0.0)
            # One window at a time rounds differently from a batch: where all drops are small,
            # shares move by up to about 1e-3, as between runtimes at export.
            torch.testing.assert_close(attributions[row], expected, atol=ATTRIBUTION_TOLERANCE, rtol=0)


def test_reused_prefixes_give_the_same_scores_as_running_every_occluded_window(
    model: NextActionModel,
) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    positions = range(WINDOW - EXPLAIN, WINDOW)
    # Per window: each occluded window whole, then the original.
    whole = [
        torch.stack([*(without(x, p) for p in positions), x], dim=1).flatten(0, 1)
        for x in (items, actions, gaps)
    ]
    with torch.no_grad():
        expected = model.item_logits(model.newest_hidden(*whole))
        logits = model.item_logits(module.last_hidden(items, actions, gaps))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_attributions_zero_on_pads_and_old_events_and_sum_to_one_or_zero(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    with torch.no_grad():
        _, _, attributions = module(items, actions, gaps)[:3]
    assert torch.all(attributions >= 0)
    assert torch.all(attributions[:, :, : WINDOW - EXPLAIN] == 0)
    assert torch.all(attributions[1, :, items[1] == PAD_INDEX] == 0)
    sums = attributions.sum(dim=-1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))
    assert (sums > 0).any()


def test_a_single_event_window_and_a_shorter_serving_window(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=3).eval()
    items = torch.tensor([[0, 0, 0, 5], [2, 3, 4, 5]])
    with torch.no_grad():
        _, scores, attributions = module(items, torch.where(items > 0, 1, 0), torch.where(items > 0, 2, 0))[
            :3
        ]
    assert torch.isfinite(scores).all() and torch.isfinite(attributions).all()
    assert torch.all(attributions[0, :, :3] == 0)
    with pytest.raises(ValueError):
        ServingModule(model, explain_positions=WINDOW + 1)


def test_cutting_columns_of_padding_changes_no_output(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = (x[1:] for x in windows())  # the longest has 6 events
    with torch.no_grad():
        full = module(items, actions, gaps)
        cut = module(items[:, 2:], actions[:, 2:], gaps[:, 2:])
    torch.testing.assert_close(cut[0], full[0], rtol=0, atol=0)
    torch.testing.assert_close(cut[1], full[1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cut[2], full[2][:, :, 2:], atol=1e-5, rtol=1e-4)
    assert torch.all(full[2][:, :, :2] == 0)


def test_a_model_that_excludes_seen_items_never_serves_one_and_keeps_their_mass_out(
    model: NextActionModel,
) -> None:
    excluding = NextActionModel(replace(model.config, exclude_seen=True))
    excluding.load_state_dict(model.state_dict())
    excluding.eval()
    items, actions, gaps = windows()
    module = ServingModule(excluding, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    with torch.no_grad():
        indices, _, attributions = module(items, actions, gaps)[:3]
        logits = excluding.predict(items, actions, gaps)
        plain = model.predict(items, actions, gaps)
    for row in range(items.shape[0]):
        assert not set(indices[row].tolist()) & set(items[row].tolist())
        seen = items[row][items[row] > UNKNOWN_INDEX]
        assert torch.isinf(logits[row, seen]).all() and torch.isfinite(plain[row, seen]).all()
    # Attributions still measure removals against the same candidate set: shares sum to 1 or 0.
    sums = attributions.sum(dim=2)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))


def test_the_transition_prior_adds_the_newest_events_successors(model: NextActionModel) -> None:
    items, actions, gaps = windows()
    prior = NextActionModel(model.config)
    prior.load_state_dict(model.state_dict())
    network = NextActionModel(model.config)
    network.load_state_dict(model.state_dict())
    prior.eval().prior_weight.fill_(2.0)
    network.eval().prior_weight.fill_(0.0)
    with torch.no_grad():
        added = prior.predict(items, actions, gaps) - network.predict(items, actions, gaps)
    expected = torch.zeros(3, 14)
    for row in range(3):
        for age in range(PRIOR_HISTORY):  # newest first, each half the next newer
            item = int(items[row, -1 - age])
            for successor, count in zip(
                model.successor_items[item], model.successor_scores[item], strict=True
            ):
                expected[row, successor] += 2.0 * 0.5**age * count
    real = items.new_ones(3, 14, dtype=torch.bool)
    real[:, [PAD_INDEX, UNKNOWN_INDEX]] = False
    torch.testing.assert_close(added[real].reshape(3, -1), expected[real].reshape(3, -1))
    assert (expected[real] > 0).any()


def test_signals_say_how_each_event_relates_to_each_item(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    with torch.no_grad():
        served = module(items, actions, gaps)
    signals, top = served.signals, served.top_indices
    assert signals.dtype == torch.int8 and signals.shape == (3, TOP_K, WINDOW)
    vectors = torch.cat([n.item_embedding.weight for n in model.item_networks], dim=1).detach()
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    for row in range(3):
        for k in range(TOP_K):
            item = int(top[row, k])
            for column in range(WINDOW):
                event = int(items[row, column])
                if event == PAD_INDEX:
                    expected = 0
                elif event == item:
                    expected = SIGNAL_CODES["same_item"]
                elif item in model.successor_items[event].tolist():
                    expected = SIGNAL_CODES["sequence_pattern"]
                elif float(vectors[event] @ vectors[item]) >= float(module.similar_cosine):
                    expected = SIGNAL_CODES["similar_item"]
                else:
                    expected = SIGNAL_CODES["context"]
                assert int(signals[row, k, column]) == expected
    # The top items' similarities are the same cosines, 1 with themselves.
    torch.testing.assert_close(served.similarities, vectors[top] @ vectors[top].transpose(1, 2))
    torch.testing.assert_close(torch.diagonal(served.similarities, dim1=1, dim2=2), torch.ones(3, TOP_K))


def test_popularity_is_the_vocabulary_rank_and_the_correction_demotes_popular_items(
    model: NextActionModel,
) -> None:
    counts = torch.zeros(14, dtype=torch.int64)
    counts[2:] = torch.arange(120, 0, -10)  # index order is popularity order, as trained
    corrected = NextActionModel(model.config)
    corrected.load_state_dict(model.state_dict())
    corrected.eval().set_popularity(counts)
    module = ServingModule(corrected, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    with torch.no_grad():
        plain = module(items, actions, gaps)
        strong = module(items, actions, gaps, torch.full((3, 1), 4.0))
    torch.testing.assert_close(plain.popularity, (plain.top_indices - 1).float() / 12)
    assert strong.popularity.mean() > plain.popularity.mean()
    # The correction is per window: a zero row is served exactly as without it.
    mixed = module(items, actions, gaps, torch.tensor([[0.0], [4.0], [0.0]]))
    torch.testing.assert_close(mixed.top_indices[[0, 2]], plain.top_indices[[0, 2]])
    torch.testing.assert_close(mixed.top_indices[1], strong.top_indices[1])


def test_items_added_after_training_are_marked_as_from_text(model: NextActionModel) -> None:
    added = NextActionModel(replace(model.config, learned_items=10))
    added.load_state_dict(model.state_dict())
    module = ServingModule(added.eval(), top_k=12, explain_positions=EXPLAIN).eval()
    with torch.no_grad():
        served = module(*windows())
    assert torch.equal(served.item_origins, (served.top_indices >= 10).to(torch.int8))
    assert served.item_origins.any() and not served.item_origins.all()


def test_next_event_outputs_are_the_heads_on_the_window_and_their_occlusion(model: NextActionModel) -> None:
    module = ServingModule(model, top_k=TOP_K, explain_positions=EXPLAIN).eval()
    items, actions, gaps = windows()
    with torch.no_grad():
        served = module(items, actions, gaps)
        hidden = model.newest_hidden(items, actions, gaps)
        profile = window_profile(actions, gaps)
        torch.testing.assert_close(
            served.next_actions, torch.softmax(model.action_logits(hidden, profile), -1)
        )
        torch.testing.assert_close(
            served.item_actions, torch.softmax(model.item_action_logits(hidden, served.top_indices), -1)
        )
        log_gaps = model.log_gap_quantiles(hidden, profile)
        torch.testing.assert_close(served.gap_quantiles, gap_seconds(log_gaps))
        assert torch.all(served.gap_quantiles[:, 1:] >= served.gap_quantiles[:, :-1])
        base = torch.log_softmax(model.action_logits(hidden, profile), -1)  # [3, A]
        drops = torch.zeros_like(served.action_attributions)  # [3, A, W]
        for position in range(WINDOW - EXPLAIN, WINDOW):
            # The occluded window from scratch: its own trunk pass and its own profile.
            occluded_window = [without(t, position) for t in (items, actions, gaps)]
            occluded = model.newest_hidden(*occluded_window)
            occluded_profile = window_profile(*occluded_window[1:])
            drop = base - torch.log_softmax(model.action_logits(occluded, occluded_profile), -1) - MIN_DROP
            drops[:, :, position] = torch.where(items[:, position : position + 1] != PAD_INDEX, drop, 0.0)
    drops = drops.clamp(min=0)
    totals = drops.sum(dim=2, keepdim=True)
    expected = torch.where(totals > 0, drops / totals, 0.0)
    assert expected.sum() > 0  # some event moves some action's probability
    torch.testing.assert_close(served.action_attributions, expected, atol=ATTRIBUTION_TOLERANCE, rtol=0)


def test_gap_quantiles_are_seconds_at_or_above_zero_in_order() -> None:
    """The lowest quantile fitted where many gaps are 0 can land below log(1 + 0)."""
    log_quantiles = torch.tensor([[-0.3, -0.1, 0.4, 2.0, 25.0], [-2.0, 0.0, 1.0, 1.0, 3.0]])
    seconds = gap_seconds(log_quantiles)
    assert torch.all(seconds >= 0)
    assert torch.all(seconds[:, 1:] >= seconds[:, :-1])
    assert torch.isfinite(seconds).all()
    torch.testing.assert_close(seconds[1, 2:], torch.expm1(torch.tensor([1.0, 1.0, 3.0])))
