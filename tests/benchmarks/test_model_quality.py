"""The quality benchmark's summary over seeds: mean and standard deviation per method, under
both evaluator conventions."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.model_quality import (
    COLUMNS,
    NEXT_EVENT_COLUMNS,
    PUBLISHED,
    TIME_COLUMNS,
    next_event_columns,
    summary,
    table,
)

pytestmark = pytest.mark.unit


def _run(seed: int, model_ndcg: float, zero_ndcg: float) -> dict[str, Any]:
    def metrics(ndcg: float) -> dict[str, float]:
        return {column: ndcg if column == "ndcg@10" else 0.5 for column in COLUMNS}

    return {
        "seed": seed,
        "users": 10,
        "items": 20,
        "train_seconds": 60.0 + seed,
        "epochs_run": 5,
        "networks": 1,
        "results": {
            "model": {"validation": metrics(0.9), "test": metrics(model_ndcg)},
            "popularity": {"validation": metrics(0.1), "test": metrics(0.1)},
        },
        "results_history_zero": {"model": metrics(zero_ndcg), "popularity": metrics(0.1)},
        "next_event": {"test": {"model": dict.fromkeys(NEXT_EVENT_COLUMNS, 0.25)}},
        "next_event_columns": list(TIME_COLUMNS),
        "serving_cost": {
            "latency_ms_batch_1": 0.5,
            "latency_ms_batch_32": 17.0,
            "windows_per_s_batch_32": 1882.0,
            "onnx_megabytes": 8.5,
        },
        "parameters": 1000,
        "published": PUBLISHED["beauty"],
    }


def test_the_summary_is_the_mean_and_standard_deviation_of_the_seeds_test_metrics() -> None:
    runs = [_run(0, 0.060, 0.058), _run(1, 0.062, 0.059), _run(2, 0.064, 0.063)]
    excluded, zero = summary(runs), summary(runs, "results_history_zero")
    assert excluded["model"]["ndcg@10"] == pytest.approx((0.062, 0.002))
    assert zero["model"]["ndcg@10"] == pytest.approx((0.060, 0.002645751))
    assert excluded["popularity"]["ndcg@10"] == pytest.approx((0.1, 0.0))
    text = table("data/Beauty.txt", runs)
    assert "3 seed(s) [0, 1, 2]" in text and "60-62 s" in text
    assert "0.0620 ± 0.0020" in text and "0.0600 ± 0.0026" in text
    assert "WEARec (AAAI 2026) (published)" in text
    assert "log_gap_median_abs_error" in text and "purchase_auc" not in text


def test_next_event_measures_need_action_types_and_real_times() -> None:
    from serving.data import UserSequence

    views = [UserSequence("u", ("e1", "e2"), ("a", "b"), (1, 1), (0, 1000))]
    mixed = [UserSequence("u", ("e1", "e2"), ("a", "b"), (1, 4), (0, 1000))]
    assert next_event_columns(views, "user-lines") == []
    assert next_event_columns(views, "movielens") == list(TIME_COLUMNS)
    assert next_event_columns(mixed, "events") == list(NEXT_EVENT_COLUMNS)


def test_one_seed_has_no_spread() -> None:
    assert summary([_run(0, 0.06, 0.05)])["model"]["hr@10"] == (0.5, 0.0)
