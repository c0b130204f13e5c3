"""Samples of a Prometheus text exposition (an exporter's or the app's /metrics), read by the
scenarios' tests: one parser for all of them."""
from __future__ import annotations

import re

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def series(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples of NAME whose labels include LABELS (in any order)."""
    found = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    return found
