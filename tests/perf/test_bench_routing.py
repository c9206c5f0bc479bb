"""The routing benchmark's pieces: its seeded trace has the issue's shape, and a
few seconds of it run end to end through the router as a user runs the script
(nothing about speed is asserted: the figures live in scripts/bench_routing.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from routing_trace import TRACES, Fleet, build_trace  # noqa: E402

MODELS = ["llama3.2:3b", "qwen2.5:7b"]


def test_the_trace_is_seeded_and_a_longer_one_starts_with_the_same_sessions() -> None:
    short, long = build_trace(5, 30, MODELS), build_trace(5, 60, MODELS)
    assert [(s.kind, s.model, s.arrival, [t.new_messages for t in s.turns]) for s in short] == [
        (s.kind, s.model, s.arrival, [t.new_messages for t in s.turns]) for s in long[:30]
    ]
    assert build_trace(6, 30, MODELS)[0].turns[0].new_messages != short[0].turns[0].new_messages


@pytest.mark.parametrize(("name", "agent_requests"), [("agent-heavy", (0.85, 0.95)), ("mixed", (0.6, 0.8))])
def test_the_trace_mixes_agents_chats_and_one_shots_as_the_issue_says(name: str, agent_requests: tuple[float, float]) -> None:
    mix = TRACES[name]
    trace = build_trace(16, 300, MODELS, mix)
    kinds = {kind: [s for s in trace if s.kind == kind] for kind in ("agent", "chat", "one-shot")}
    assert all(kinds.values())
    assert all(10 <= len(s.turns) <= 40 for s in kinds["agent"])
    assert all(3 <= len(s.turns) <= 10 for s in kinds["chat"])
    assert all(len(s.turns) == 1 for s in kinds["one-shot"])
    final = [s.turns[-1].prompt_tokens for s in kinds["agent"]]
    assert min(final) > 15_000 and max(final) <= 31_000  # contexts growing to 20k-30k
    for session in kinds["agent"]:
        sizes = [t.prompt_tokens for t in session.turns]
        assert sizes == sorted(sizes)  # each turn resends the conversation, grown
    requests = sum(len(s.turns) for s in trace)
    low, high = agent_requests
    assert low < sum(len(s.turns) for s in kinds["agent"]) / requests < high
    arrivals = [s.arrival for s in trace]
    assert arrivals == sorted(arrivals)
    assert 0.8 < requests / arrivals[-1] < 1.25  # about one request per second of trace time


def test_capacity_is_the_slots_over_the_mean_slot_time_of_what_each_turn_adds() -> None:
    trace = build_trace(16, 100, MODELS)
    fleet = Fleet(containers=4, num_parallel=4, prompt_rate=4000, decode_rate=40)
    token_seconds = 4 / (40 * 1.79)  # the default curve: 4 decoders run 1.79 times as fast as one
    whole, new = [], []
    for session in trace:
        for i, turn in enumerate(session.turns):
            before = session.turns[i - 1].prompt_tokens + session.turns[i - 1].max_tokens if i else 0
            whole.append(turn.prompt_tokens / 4000 + turn.max_tokens * token_seconds)
            new.append((turn.prompt_tokens - before) / 4000 + turn.max_tokens * token_seconds)
    assert abs(fleet.capacity(trace) - 16 / (sum(new) / len(new))) < 1e-9
    assert abs(fleet.capacity(trace, reuse=False) - 16 / (sum(whole) / len(whole))) < 1e-9
    assert fleet.capacity(trace) > fleet.capacity(trace, reuse=False)


def test_a_short_run_through_the_router_replays_sessions_and_reports_them(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_routing.py"), "--quick", "--sides", "router affinity",
         "--no-litellm", "--no-nginx", "--containers", "2", "--time-scale", "10", "--warmup", "2", "--seconds", "4",
         "--drain", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "routing.json").read_text())
    run = report["results"]["80%"]["router affinity"]
    assert run["errors"] == 0 and run["measured"] > 0
    assert run["affinity_placements"]["hit"] > 0  # later turns went back to their container
    assert run["prompt_reuse"] > 0  # ...where the emulator found their prompt cached
    assert report["meta"]["capacity_rps"] > 0 and report["meta"]["hot_path_us"]
    assert "| 80% | router affinity |" in (out / "routing.md").read_text() and "| 80% | router affinity |" in done.stdout
