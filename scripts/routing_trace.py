"""The seeded trace `scripts/bench_routing.py` replays, and the fleet capacity it is paced by.

Sessions of three kinds, each on one of the fleet's models (chosen at random):

- coding agent: a long system prompt shared by every session of the same
  agent (three agents), a task, then 10-40 turns, each answering with a short
  tool call and resending the whole conversation with the tool's output, so
  the context grows to 20k-30k tokens; the outputs' sizes are heavy-tailed
  (log-normal shares of that growth: most short, a file read now and then);
  the tool runs 0.5-3 s between turns;
- chat: a short system prompt shared by an app's sessions (five apps), 3-10
  turns of a question and a longer answer, 5-20 s of the user reading and
  typing between turns;
- one-shot: one request with a document of 300-4,000 tokens.

Two mixes of them (`TRACES`): agent-heavy (60% of sessions are agents, about
nine requests in ten) and mixed (35%, seven in ten).

Texts are words drawn from a fixed vocabulary: one word is one token for the
emulator's tokenizer, so sizes are exact. Sessions arrive as a Poisson
process; a session's turns follow one another (each waits for the previous
answer, as a client must): an open loop of sessions, each a closed loop.

Capacity: the requests per second the fleet completes with all its slots
busy when every turn evaluates only what it adds to its conversation (its
new messages; the rest is in the slot that served its previous turn), the
best any placement can do: its slots (containers x num_parallel) divided by
the mean slot time of a request, the evaluated prompt at the prompt rate plus
the answer at the per-token time of a slot when all of its container's slots
decode at once. At 100% of it even a perfect router has no headroom; a
placement that makes turns evaluate their conversation again spends slot time
on it and reaches saturation sooner. (`capacity(reuse=False)`, every prompt
evaluated whole, is the fleet's capacity if no cache existed.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from router.emulator.throughput import DEFAULT_DECODE_SCALING, Curve, speedup

MAX_TOOL_OUTPUT = 12_000
MESSAGE_OVERHEAD = 4  # the emulator's chat template: START role SEP ... END
PROMPT_OVERHEAD = 3  # START assistant SEP

VOCABULARY = [
    f"{stem}{suffix}"
    for stem in ("parse", "token", "index", "cache", "route", "model", "query", "build", "test", "write", "read", "merge",
                 "check", "value", "field", "store", "queue", "frame", "graph", "shard", "layer", "batch", "slot", "node")
    for suffix in ("", "s", "er", "ed", "ing", "able", "ment", "ion")
]


@dataclass(frozen=True, slots=True)
class Mix:
    """What the sessions look like; sizes in tokens, times in seconds of real time."""

    agent_share: float = 0.35
    chat_share: float = 0.40  # the rest are one-shot requests
    agent_system: int = 3000
    agents: int = 3
    agent_task: tuple[int, int] = (100, 400)
    agent_turns: tuple[int, int] = (10, 40)
    agent_context: tuple[int, int] = (20_000, 30_000)  # where a session's context ends up
    agent_answer: tuple[int, int] = (30, 200)
    tool_output_sigma: float = 1.0  # tool outputs: log-normal shares of the session's growth
    agent_think: tuple[float, float] = (0.5, 3.0)
    chat_system: tuple[int, int] = (200, 600)
    chat_apps: int = 5
    chat_first: tuple[int, int] = (20, 300)
    chat_turns: tuple[int, int] = (3, 10)
    chat_follow_up: tuple[int, int] = (10, 150)
    chat_answer: tuple[int, int] = (100, 400)
    chat_think: tuple[float, float] = (5.0, 20.0)
    one_shot_system: int = 100
    one_shot_document: tuple[int, int] = (300, 4000)
    one_shot_answer: tuple[int, int] = (50, 300)

    def mean_turns(self) -> float:
        """Requests per session on average."""
        one_shot = 1 - self.agent_share - self.chat_share
        return self.agent_share * sum(self.agent_turns) / 2 + self.chat_share * sum(self.chat_turns) / 2 + one_shot

    def describe(self) -> str:
        one_shot = 1 - self.agent_share - self.chat_share
        return (
            f"sessions: {self.agent_share:.0%} coding agents ({self.agents} agents, {self.agent_system}-token system prompt, "
            f"{self.agent_turns[0]}-{self.agent_turns[1]} turns, context growing to {self.agent_context[0]:,}-{self.agent_context[1]:,} "
            f"tokens, {self.agent_answer[0]}-{self.agent_answer[1]}-token answers, tool outputs log-normal (sigma {self.tool_output_sigma:g}), "
            f"tools {self.agent_think[0]:g}-{self.agent_think[1]:g} s), "
            f"{self.chat_share:.0%} chats ({self.chat_apps} apps, {self.chat_turns[0]}-{self.chat_turns[1]} turns, "
            f"{self.chat_answer[0]}-{self.chat_answer[1]}-token answers, {self.chat_think[0]:g}-{self.chat_think[1]:g} s between turns), "
            f"{one_shot:.0%} one-shot ({self.one_shot_document[0]}-{self.one_shot_document[1]}-token documents)"
        )


@dataclass(slots=True)
class Turn:
    """One request of a session: the messages it adds, then how long its answer may be."""

    new_messages: list[dict[str, str]]
    max_tokens: int
    pause: float  # real seconds between the previous answer and this request
    prompt_tokens: int  # the whole prompt as the emulator renders it (answers counted at max_tokens)


@dataclass(slots=True)
class Session:
    index: int
    kind: str
    model: str
    arrival: float  # real seconds after the start, at 100% of capacity
    turns: list[Turn] = field(default_factory=list)


class Words:
    """Seeded text: `n` tokens for the emulator's tokenizer, cut from a seeded pool of words."""

    POOL = 1 << 17

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = rng.choices(VOCABULARY, k=self.POOL)

    def __call__(self, count: int, label: str) -> str:
        """`label` (one word) first: a text of its own, whose prefix no other text shares."""
        start = self.rng.randrange(self.POOL - count)
        return " ".join([label, *self.pool[start : start + count - 1]])


# Two mixes of the same three kinds of session. "agent-heavy" is the trace the floors
# are judged on: a team's coding agents dominate what the fleet serves (about nine requests in
# ten). "mixed" gives chats and one-shots a larger share (seven requests in ten from agents); a
# chat's prompt is short, so every placement answers it quickly and the median of a policy that
# scatters sessions sits between its fast chats and its slow agents.
TRACES = {
    "agent-heavy": Mix(agent_share=0.6, chat_share=0.25),
    "mixed": Mix(),
}


def _message(role: str, content: str, tokens: int) -> tuple[dict[str, str], int]:
    return {"role": role, "content": content}, tokens + MESSAGE_OVERHEAD


def build_trace(seed: int, sessions: int, models: list[str], mix: Mix | None = None) -> list[Session]:
    """`sessions` sessions, arrivals spaced for a mean of one request per second of real time
    (`pace` rescales them to a load)."""
    mix = mix or Mix()
    rng = random.Random(seed)
    words = Words(rng)
    agent_systems = [words(mix.agent_system, f"agent{i}") for i in range(mix.agents)]
    chat_systems = [words(rng.randint(*mix.chat_system), f"app{i}") for i in range(mix.chat_apps)]
    chat_system_sizes = [len(s.split()) for s in chat_systems]
    one_shot_system = words(mix.one_shot_system, "summarizer")
    trace: list[Session] = []
    for index in range(sessions):
        roll = rng.random()
        model = rng.choice(models)
        tag = f"s{index}"
        if roll < mix.agent_share:
            session = Session(index, "agent", model, 0.0)
            which = rng.randrange(mix.agents)
            task_size = rng.randint(*mix.agent_task)
            first = [_message("system", agent_systems[which], mix.agent_system), _message("user", words(task_size, tag), task_size)]
            turns = rng.randint(*mix.agent_turns)
            answers = [rng.randint(*mix.agent_answer) for _ in range(turns)]
            context = sum(t for _, t in first) + PROMPT_OVERHEAD
            # the tools' outputs fill what the answers leave of the growth to the final context,
            # heavy-tailed as they are (most short, a file read now and then)
            target = rng.randint(*mix.agent_context)
            weights = [rng.lognormvariate(0.0, mix.tool_output_sigma) for _ in range(turns - 1)]
            budget = target - context - sum(answers[:-1]) - 2 * MESSAGE_OVERHEAD * (turns - 1)
            outputs = [min(MAX_TOOL_OUTPUT, max(20, round(budget * w / sum(weights)))) for w in weights]
            new = first
            for turn in range(turns):
                pause = rng.uniform(*mix.agent_think) if turn else 0.0
                session.turns.append(Turn([m for m, _ in new], answers[turn], pause, context))
                if turn < turns - 1:
                    new = [_message("user", words(outputs[turn], f"{tag}t{turn}"), outputs[turn])]
                    context += answers[turn] + MESSAGE_OVERHEAD + new[0][1]
        elif roll < mix.agent_share + mix.chat_share:
            session = Session(index, "chat", model, 0.0)
            app = rng.randrange(mix.chat_apps)
            first_size = rng.randint(*mix.chat_first)
            new = [_message("system", chat_systems[app], chat_system_sizes[app]), _message("user", words(first_size, tag), first_size)]
            context = sum(t for _, t in new) + PROMPT_OVERHEAD
            for turn in range(rng.randint(*mix.chat_turns)):
                answer = rng.randint(*mix.chat_answer)
                pause = rng.uniform(*mix.chat_think) if turn else 0.0
                session.turns.append(Turn([m for m, _ in new], answer, pause, context))
                follow_up = rng.randint(*mix.chat_follow_up)
                new = [_message("user", words(follow_up, f"{tag}t{turn}"), follow_up)]
                context += answer + MESSAGE_OVERHEAD + new[0][1]
        else:
            session = Session(index, "one-shot", model, 0.0)
            size = rng.randint(*mix.one_shot_document)
            new = [_message("system", one_shot_system, mix.one_shot_system), _message("user", words(size, tag), size)]
            context = sum(t for _, t in new) + PROMPT_OVERHEAD
            session.turns.append(Turn([m for m, _ in new], rng.randint(*mix.one_shot_answer), 0.0, context))
        trace.append(session)
    # Poisson arrivals, one request per second on average (a session every mean-turns seconds),
    # from a generator of their own: a longer trace starts with the same sessions at the same times
    per_session = mix.mean_turns()
    arrivals = random.Random(seed + 1)
    at = 0.0
    for session in trace:
        at += arrivals.expovariate(1.0 / per_session)
        session.arrival = at
    return trace


@dataclass(frozen=True, slots=True)
class Fleet:
    containers: int
    num_parallel: int
    prompt_rate: float  # tokens/s, real time
    decode_rate: float  # tokens/s of one slot decoding alone, real time
    curve: Curve = DEFAULT_DECODE_SCALING

    @property
    def token_seconds_full(self) -> float:
        """Seconds per answer token of one slot while all of its container's slots decode."""
        n = self.num_parallel
        return n / (self.decode_rate * speedup(self.curve, n))

    def slot_seconds(self, prompt_tokens: int, answer_tokens: int) -> float:
        """A request's time on a slot that evaluates `prompt_tokens` and writes `answer_tokens`."""
        return prompt_tokens / self.prompt_rate + answer_tokens * self.token_seconds_full

    def schedule(self, session: Session) -> list[float]:
        """When each turn would be sent, in real seconds after the session's first, each earlier
        one evaluating only what it adds: where a session already under way stands."""
        offsets = [0.0]
        previous = 0
        for turn, following in zip(session.turns, session.turns[1:], strict=False):
            evaluated = turn.prompt_tokens - previous
            offsets.append(offsets[-1] + self.slot_seconds(evaluated, turn.max_tokens) + following.pause)
            previous = turn.prompt_tokens + turn.max_tokens
        return offsets

    def capacity(self, trace: list[Session], *, reuse: bool = True) -> float:
        """Requests per second (real time) the fleet completes, all its slots busy: with `reuse`,
        each turn evaluating only what it adds to its conversation (the best any placement can
        do: the fleet's capacity for this trace); without, every prompt evaluated whole."""
        times = []
        for session in trace:
            previous: Turn | None = None
            for turn in session.turns:
                prompt = turn.prompt_tokens
                if reuse and previous is not None:
                    prompt -= previous.prompt_tokens + previous.max_tokens  # already in its slot
                times.append(self.slot_seconds(prompt, turn.max_tokens))
                previous = turn
        return self.containers * self.num_parallel / (sum(times) / len(times))


def summary(trace: list[Session]) -> dict[str, float]:
    turns = [t for s in trace for t in s.turns]
    agent_turns = [t for s in trace if s.kind == "agent" for t in s.turns]
    return {
        "sessions": len(trace),
        "requests": len(turns),
        "agent_request_share": round(len(agent_turns) / len(turns), 3),
        "mean_prompt_tokens": round(sum(t.prompt_tokens for t in turns) / len(turns)),
        "max_prompt_tokens": max(t.prompt_tokens for t in turns),
        "mean_answer_tokens": round(sum(t.max_tokens for t in turns) / len(turns)),
    }
