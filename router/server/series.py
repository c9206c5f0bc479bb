"""Counters and histograms for the request path, cheaper than prometheus-client's own.

prometheus-client's metric children take a lock per increment (about 1-4 µs
each). The router's request path runs in one event loop thread, so these keep
plain dicts of label tuples (well under a microsecond per observation), and
turn into prometheus-client metric families only when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


class CounterSeries:
    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric(list(labels), value)
        return family


class HistogramSeries:
    __slots__ = ("bounds", "doc", "labels", "les", "name", "series")

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(sorted(buckets))
        self.les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        # per label tuple: a count per bucket (the last one +Inf), then the sum
        self.series: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        counts[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, counts in self.series.items():
            cumulative = list(accumulate(counts[:-1]))
            family.add_metric(list(labels), list(zip(self.les, cumulative, strict=False)), counts[-1])
        return family
