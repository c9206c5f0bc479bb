"""The last-minute window on its own clock: what it counts, what it forgets, what it keeps."""

from __future__ import annotations

from typing import Any

from router.server.window import SAMPLES, SPAN, Window, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add(window: Window, model: str = "m", container: str = "c", **fields: Any) -> None:
    values: dict[str, Any] = {"failed": False, "fallback_from": None, "ttft": None, "tokens": 0, "speed": None, "cold": False, **fields}
    window.add(model, container, **values)


def test_counts_rates_and_percentiles_over_the_last_minute() -> None:
    clock = Clock()
    window = Window(clock)
    clock.now += 120  # running for longer than the span: rates are per SPAN seconds
    for ttft in range(1, 101):  # 100 answers, TTFT 0.01 .. 1.00 s, 10 tokens each at 50 tokens/s
        add(window, ttft=ttft / 100, tokens=10, speed=50.0)
    add(window, container="d", failed=True)
    add(window, model="n", container="d", fallback_from="m")
    figures = window.figures()
    m = figures["models"]["m"]
    assert (m["requests"], m["errors"], m["tokens"], m["fallbacks"]) == (101, 1, 1000, 1)
    assert (m["ttft_p50"], m["ttft_p95"], m["speed_p50"]) == (0.5, 0.95, 50.0)
    assert m["requests_per_s"] == round(101 / SPAN, 3) and m["tokens_per_s"] == round(1000 / SPAN, 1)
    assert figures["containers"]["c"]["requests"] == 100 and figures["containers"]["d"]["requests"] == 2
    assert figures["containers"]["d"]["fallbacks"] == 1 and figures["containers"]["c"]["fallbacks"] == 0
    assert figures["models"]["n"]["requests"] == 1 and figures["models"]["n"]["fallbacks"] == 0
    assert figures["total"]["requests"] == 102 and figures["total"]["fallbacks"] == 1
    assert window.combined(["m", "n"])["requests"] == 102
    assert window.combined(["n"])["ttft_p50"] is None


def test_a_young_router_rates_over_its_age() -> None:
    clock = Clock()
    window = Window(clock)
    clock.now += 10
    for _ in range(20):
        add(window)
    assert window.figures()["total"]["requests_per_s"] == 2.0


def test_what_is_older_than_the_span_leaves() -> None:
    clock = Clock()
    window = Window(clock)
    add(window, ttft=5.0, cold=True)
    clock.now += SPAN / 2
    add(window, model="n", ttft=0.1)
    assert window.figures()["total"]["requests"] == 2
    clock.now += SPAN / 2 + 1  # the first answer is now more than a span old
    figures = window.figures()
    assert figures["total"]["requests"] == 1 and figures["total"]["cold_loads"] == 0
    assert figures["total"]["ttft_p95"] == 0.1
    assert "m" not in figures["models"]  # idle for a whole span: forgotten
    assert figures["models"]["n"]["requests"] == 1
    clock.now += SPAN
    figures = window.figures()
    assert figures["containers"] == figures["models"] == {} and figures["total"]["requests"] == 0


def test_memory_is_bounded_however_many_answers() -> None:
    clock = Clock()
    window = Window(clock)
    for i in range(3 * SAMPLES):
        clock.now += 0.001
        add(window, ttft=float(i))
    series = window.models["m"]
    assert len(series.ttft) == SAMPLES and len(series.counts) == SPAN
    assert window.figures()["models"]["m"]["requests"] == 3 * SAMPLES  # counts stay exact
    assert window.figures()["models"]["m"]["ttft_p50"] == float(3 * SAMPLES - SAMPLES // 2 - 1)  # the latest samples


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
