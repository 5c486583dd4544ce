"""The stream benchmark's printed table: every figure with the baseline it is a ratio of."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def render(report: dict[str, Any]) -> str:
    raw, model_only = report["raw_consume_events_per_s"], report["model_only_predictions_per_s"]
    naive, stream, pipeline = (
        report["naive_events_per_s"],
        report["stream_events_per_s"],
        report["pipeline_events_per_s"],
    )
    predictions = report["pipeline"]["sustained_recommendations_per_s"]
    rows = [
        ("ceiling: aiokafka consume, no processing", f"{raw:,.0f} events/s", ""),
        ("ceiling: Triton real model, pre-built windows", f"{model_only:,.0f} predictions/s", ""),
        ("naive Faust agent (trivial model)", f"{naive:,.0f} events/s", ""),
        (
            "stream, trivial model (sustained)",
            f"{stream:,.0f} events/s",
            f"{stream / naive:.1f}x naive (target >= 10x, >= 10,000/s)",
        ),
        (
            "pipeline, real model (sustained)",
            f"{pipeline:,.0f} events/s",
            f"{pipeline / model_only:.0%} of model-only (target >= 70%)",
        ),
        (
            "  same step, as predictions (one per user/batch)",
            f"{predictions:,.0f} predictions/s",
            f"{predictions / model_only:.0%} of model-only",
        ),
    ]
    lines = ["", "Stream benchmark (one run, same machine)", "-" * 100]
    lines += [f"{what:<48}{value:>22}   {ratio}" for what, value, ratio in rows]
    lines.append("-" * 100)
    for name in ("stream", "pipeline"):
        for fraction, figures in report[name]["latency_ms"].items():
            lines.append(
                f"{name:<9} latency at {float(fraction):>4.0%} ({figures['offered_per_s']:>8,.0f}/s): "
                f"p50 {figures['p50']:6.0f} ms  p95 {figures['p95']:6.0f} ms  p99 {figures['p99']:6.0f} ms  "
                f"({figures['events_per_recommendation']:.1f} events per recommendation)"
            )
    scale = report["scale_out"]
    steady = scale["latency_at_single_50pct_ms"]
    lines.append(
        f"two workers x 2 partitions (trivial model): drain {scale['drain_events_per_s']:,.0f} events/s "
        f"vs one worker {report['stream']['drain_events_per_s']:,.0f}; p99 "
        f"{steady['p99']:.0f} ms at {steady['offered_per_s']:,.0f}/s"
    )
    state = report["state"]
    lines.append(
        f"window state, {state['users']:,} users ({state['mean_window_events']:.1f} events each): "
        f"{state['rss_bytes_per_user']:,.0f} B RSS/user, {state['table_payload_bytes_per_user']:,.0f} B "
        f"table payload/user (target <= 2,048)"
    )
    return "\n".join(lines)
