"""How fast a runner decodes when several of its slots decode at once.

A GPU decodes the streams of one model as one batch: each step reads the
weights once for all of them, so the aggregate token rate grows with the
number of concurrent decoders, but less than linearly, and every stream
gets slower. The curve is a list of points `decoders:speedup`, the speedup
being the aggregate rate relative to one decoder; between points it is
interpolated linearly, past the last point each stream keeps the last
point's share.

The default is llama.cpp's own published measurement, the "Sample results"
table of its batched-bench tool (LLaMA 7B F16, 128 prompt and 128
generated tokens per sequence): S_TG 41.57, 50.90, 74.44, 139.43, 242.23
and 465.40 tokens/s for 1, 2, 4, 8, 16 and 32 parallel sequences.
"""

from __future__ import annotations

import math

Curve = tuple[tuple[int, float], ...]

DECODE_SCALING_SOURCE = (
    "llama.cpp batched-bench README, Sample results, LLaMA 7B F16 S_TG "
    "(https://github.com/ggml-org/llama.cpp/blob/master/tools/batched-bench/README.md)"
)
DEFAULT_DECODE_SCALING: Curve = ((1, 1.0), (2, 1.22), (4, 1.79), (8, 3.35), (16, 5.83), (32, 11.2))
LINEAR: Curve = ((1, 1.0),)


def format_curve(curve: Curve) -> str:
    return ",".join(f"{decoders}:{speedup:g}" for decoders, speedup in curve)


def parse_curve(text: str) -> Curve:
    """`1:1,2:1.22,4:1.79` (or `linear`: no slowdown); ValueError says what is wrong."""
    if text.strip().lower() == "linear":
        return LINEAR
    points: list[tuple[int, float]] = []
    for item in text.split(","):
        decoders_text, sep, speedup_text = item.strip().partition(":")
        try:
            decoders, speedup = int(decoders_text), float(speedup_text)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not DECODERS:SPEEDUP") from None
        if not sep or decoders < 1 or not math.isfinite(speedup) or speedup <= 0:
            raise ValueError(f"{item.strip()!r}: DECODERS must be >= 1 and SPEEDUP > 0")
        if points and decoders <= points[-1][0]:
            raise ValueError("the points must be in increasing order of DECODERS")
        points.append((decoders, speedup))
    if points[0][0] != 1:
        points.insert(0, (1, 1.0))
    base = points[0][1]
    curve = tuple((decoders, speedup / base) for decoders, speedup in points)
    for decoders, speedup in curve:
        if speedup > decoders * (1 + 1e-9):
            raise ValueError(f"{decoders} decoders cannot be more than {decoders} times as fast as one")
    return curve


def speedup(curve: Curve, decoders: int) -> float:
    """The aggregate rate of `decoders` concurrent streams, relative to one stream."""
    previous_n, previous_s = curve[0]
    for n, s in curve[1:]:
        if decoders <= n:
            return previous_s + (s - previous_s) * (decoders - previous_n) / (n - previous_n)
        previous_n, previous_s = n, s
    return previous_s * decoders / previous_n


def token_delays(tokens_per_second: float, curve: Curve, max_decoders: int) -> list[float]:
    """Seconds per token of one stream, indexed by the number decoding (index 0 unused)."""
    delays = [0.0]
    for decoders in range(1, max_decoders + 1):
        delays.append(decoders / (tokens_per_second * speedup(curve, decoders)))
    return delays
