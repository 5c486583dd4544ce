"""Read a Prometheus text endpoint into {sample name with labels: value} (demo, tests)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["scrape"]


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
