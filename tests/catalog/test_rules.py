"""Every rule of the catalog: `ollama-router validate` exits 1 and prints
`FILE:LINE: message` naming the offending line, never a traceback."""

from __future__ import annotations

import pytest

from tests.catalog.support import BASE, M, Validate, assert_refused_at_mark, edit

# (id, broken catalog with the offending line marked, text the message must contain)
RULES: list[tuple[str, str, str]] = [
    # YAML syntax
    ("yaml-tab-indent", edit("  llama-b:\n", f"\tllama-b:{M}\n"), "YAML syntax error: found character '\\t'"),
    ("yaml-bad-indent", edit("    port: 11502\n", f"    port: 11502\n   image: x{M}\n"), "YAML syntax error"),
    ("yaml-unclosed-flow", edit("    gpus: [1]\n    port: 11502\n", f"    gpus: [1\n    port: 11502{M}\n"),
     "YAML syntax error"),
    ("yaml-bad-tagged-value", edit("version: 1\n", f"version: !!int one{M}\n"), "YAML syntax error: cannot read"),
    # unknown keys
    ("unknown-key-gpu", edit("    gpus: [1]\n", f"    gpu: [1]{M}\n"), "unknown key 'gpu' in containers.llama-b"),
    ("unknown-key-model", edit("    aliases: [gpt-4o]\n", f"    alias: [gpt-4o]{M}\n"), "unknown key 'alias' in models.qwen2.5:7b"),
    ("unknown-key-top", edit("defaults:\n", f"default:{M}\n"), "unknown key 'default'"),
    # wrong types
    ("type-port-string", edit("    port: 11502\n", f"    port: eleven{M}\n"), "containers.llama-b.port: Input should be a valid integer"),
    ("type-port-quoted", edit("    port: 11502\n", f'    port: "11502"{M}\n'), "containers.llama-b.port: Input should be a valid integer"),
    ("type-gpus-scalar", edit("    gpus: [1]\n", f"    gpus: one{M}\n"), "containers.llama-b.gpus: Input should be a valid list"),
    ("type-gpu-item", edit("    gpus: [0]\n    port: 11501\n", f"    gpus:\n      - 0\n      - first{M}\n    port: 11501\n"),
     "containers.llama-a.gpus.1: Input should be a valid integer"),
    ("type-containers-string", edit("    containers: [remote]\n", f"    containers: remote{M}\n"),
     "models.qwen2.5:7b.containers: Input should be a valid list"),
    ("type-model-null", edit("  qwen2.5:7b:\n    containers: [remote]\n    aliases: [gpt-4o]\n", f"  qwen2.5:7b:{M}\n"),
     "models.qwen2.5:7b: Input should be a valid dictionary"),
    ("type-num-parallel-float", edit("    port: 11501\n", f"    port: 11501\n    num_parallel: 2.5{M}\n"),
     "containers.llama-a.num_parallel: Input should be a valid integer"),
    ("type-container-name-int", edit("  remote:\n    url: http://127.0.0.1:11434\n",
                                     "  remote:\n    url: http://127.0.0.1:11434\n"
                                     f"  7:{M}\n    port: 11507\n"), "containers.7 (the key): Input should be a valid string"),
    ("type-union-one-message", edit("    port: 11501\n", f"    port: 11501\n    command: 5{M}\n"),
     "containers.llama-a.command: Input should be a valid string or a valid list"),
    ("type-name-like-a-type", edit("  remote:\n    url: http://127.0.0.1:11434\n", f"  internal:\n    url: 5{M}\n")
     .replace("[remote]", "[internal]"), "containers.internal.url: Input should be a valid string"),
    ("type-version", edit("version: 1\n", f"version: 2{M}\n"), "version: Input should be less than or equal to 1"),
    ("routing-unknown", edit("    fallback: [qwen2.5:7b]\n", f"    fallback: [qwen2.5:7b]\n    routing: sticky{M}\n"),
     "models.llama3.2:3b.routing: Input should be 'affinity', 'least_loaded' or 'round_robin'"),
    ("routing-not-a-string", edit("    fallback: [qwen2.5:7b]\n", f"    fallback: [qwen2.5:7b]\n    routing: [affinity]{M}\n"),
     "models.llama3.2:3b.routing: Input should be 'affinity', 'least_loaded' or 'round_robin'"),
    ("affinity-max-keys-zero", edit("defaults:\n", f"router:\n  affinity_max_keys: 0{M}\ndefaults:\n"),
     "router.affinity_max_keys: Input should be greater than or equal to 1"),
    # cross references
    ("model-unknown-container", edit("    containers: [llama-a, llama-b]\n", f"    containers: [llama-a, llama-c]{M}\n"),
     "model 'llama3.2:3b' names container 'llama-c', which is not in containers:"),
    ("fallback-unknown-model", edit("    fallback: [qwen2.5:7b]\n", f"    fallback: [qwen2.5:14b]{M}\n"),
     "fallback 'qwen2.5:14b' of model 'llama3.2:3b' is not a model in this catalog"),
    ("fallback-cycle", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n    fallback: [llama3.2:3b]{M}\n"),
     "fallback cycle: llama3.2:3b -> qwen2.5:7b -> llama3.2:3b"),
    ("fallback-self", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n    fallback: [Qwen2.5:7B]{M}\n"),
     "model 'qwen2.5:7b' falls back to itself"),
    # aliases
    ("alias-is-model-tag", edit("    aliases: [gpt-4o-mini]\n", f"    aliases: [gpt-4o-mini, QWEN2.5:7B]{M}\n"),
     "alias 'QWEN2.5:7B' is the name of model 'qwen2.5:7b'"),
    ("alias-is-own-tag-normalised", edit("    aliases: [gpt-4o]\n", f"    aliases:\n      - gpt-4o\n      - library/qwen2.5:7b{M}\n"),
     "alias 'library/qwen2.5:7b' is the name of model 'qwen2.5:7b'"),
    ("alias-of-two-models", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o, GPT-4o-Mini]{M}\n"),
     "alias 'GPT-4o-Mini' is already an alias of model 'llama3.2:3b'"),
    # containers
    ("same-port", edit("    port: 11502\n", f"    port: 11501{M}\n"), "port 11501 is already used by container 'llama-a'"),
    ("url-and-gpus", edit("    url: http://127.0.0.1:11434\n", f"    url: http://127.0.0.1:11434{M}\n    gpus: [2]\n"),
     "container 'remote' has a url (not managed here) and also gpus"),
    ("url-and-image", edit("    url: http://127.0.0.1:11434\n", f"    image: ollama/ollama:0.12.6\n    url: http://127.0.0.1:11434{M}\n"),
     "container 'remote' has a url (not managed here) and also image"),
    ("negative-gpu", edit("    gpus: [0]\n    port: 11501\n", f"    gpus:\n      - 0\n      - -1{M}\n    port: 11501\n"),
     "GPU index -1 is negative"),
    ("gpu-listed-twice", edit("    gpus: [0]\n    port: 11501\n", f"    gpus:\n      - 0\n      - 0{M}\n    port: 11501\n"),
     "GPU 0 is listed twice for container 'llama-a'"),
    ("no-port-no-url", edit("  llama-b:\n    gpus: [1]\n    port: 11502\n", f"  llama-b:{M}\n    gpus: [1]\n"),
     "container 'llama-b' needs a port"),
    # keep_alive as Ollama reads it
    ("keep-alive-unitless-string-model", edit("    aliases: [gpt-4o]\n", f'    aliases: [gpt-4o]\n    keep_alive: "300"{M}\n'),
     'keep_alive \'300\' would be refused by Ollama: time: missing unit in duration "300"'),
    ("keep-alive-unitless-string-defaults", edit("  keep_alive: 24h\n", f'  keep_alive: "-1"{M}\n'),
     'defaults.keep_alive: keep_alive \'-1\' would be refused by Ollama: time: missing unit in duration "-1"'),
    ("keep-alive-garbage-container", edit("    port: 11501\n", f"    port: 11501\n    keep_alive: soon{M}\n"),
     "containers.llama-a.keep_alive: keep_alive 'soon' would be refused by Ollama: time: invalid duration \"soon\""),
    ("keep-alive-bool", edit("  keep_alive: 24h\n", f"  keep_alive: yes{M}\n"), "Unsupported type: 'bool'"),
    ("keep-alive-inf", edit("  keep_alive: 24h\n", f"  keep_alive: .inf{M}\n"), "cannot be sent to Ollama"),
    # model names
    ("tag-empty-tag", edit("  qwen2.5:7b:\n", f"  'qwen2.5:':{M}\n").replace("[qwen2.5:7b]", "[llama3.2:3b]"),
     "'qwen2.5:' is not a valid Ollama model name"),
    ("tag-space", edit("  qwen2.5:7b:\n", f"  qwen 2.5:{M}\n").replace("fallback: [qwen2.5:7b]", "fallback: []"),
     "'qwen 2.5' is not a valid Ollama model name"),
    ("tag-dot-in-namespace", edit("  qwen2.5:7b:\n", f"  my.org/qwen:7b:{M}\n").replace("fallback: [qwen2.5:7b]", "fallback: []"),
     "'my.org/qwen:7b' is not a valid Ollama model name"),
    ("tag-leading-dash", edit("  qwen2.5:7b:\n", f"  -qwen:7b:{M}\n").replace("fallback: [qwen2.5:7b]", "fallback: []"),
     "'-qwen:7b' is not a valid Ollama model name"),
    ("tag-same-model-twice", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n  Qwen2.5:7B:{M}\n    containers: [llama-b]\n"),
     "model 'Qwen2.5:7B' is the same model as 'qwen2.5:7b'"),
    ("tag-latest-twice", edit("  qwen2.5:7b:\n", "  qwen2.5:\n").replace("[qwen2.5:7b]", "[qwen2.5]")
     .replace("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n  qwen2.5:latest:{M}\n    containers: [llama-b]\n"),
     "model 'qwen2.5:latest' is the same model as 'qwen2.5'"),
    # context windows: one per container (its OLLAMA_CONTEXT_LENGTH)
    ("context-length-disagrees", edit("    fallback: [qwen2.5:7b]\n", "    fallback: [qwen2.5:7b]\n    context_length: 8192\n"
                                      f"  phi3:mini:\n    containers: [llama-b]\n    context_length: 4096{M}\n"),
     "model 'phi3:mini' pins context_length 4096 on container 'llama-b', where model 'llama3.2:3b' pins 8192"),
    ("context-length-env-disagrees", edit("    gpus: [0]\n", f"    gpus: [0]\n    env:\n      OLLAMA_CONTEXT_LENGTH: 4096{M}\n",
                                          edit("    fallback: [qwen2.5:7b]\n", "    fallback: [qwen2.5:7b]\n    context_length: 8192\n")),
     "OLLAMA_CONTEXT_LENGTH 4096 for container 'llama-a' disagrees with context_length 8192 of model 'llama3.2:3b'"),
    ("on-overflow-unknown", edit("    aliases: [gpt-4o]\n", f"    aliases: [gpt-4o]\n    on_overflow: drop{M}\n"),
     "models.qwen2.5:7b.on_overflow: Input should be 'truncate' or 'refuse'"),
    # duplicate keys
    ("duplicate-container", edit("  remote:\n", f"  llama-a:{M}\n"), "duplicate key 'llama-a'"),
    ("duplicate-model", edit("  qwen2.5:7b:\n", f"  llama3.2:3b:{M}\n"), "duplicate key 'llama3.2:3b'"),
    ("duplicate-nested-key", edit("    port: 11502\n", f"    port: 11502\n    port: 11503{M}\n"), "duplicate key 'port'"),
    ("duplicate-flow-key", edit("    gpus: [1]\n    port: 11502\n", f"    {{gpus: [1], port: 11502, gpus: [2]}}{M}\n")
     .replace("  llama-b:\n    {", "  llama-b: {"), "duplicate key 'gpus'"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in RULES], ids=[i for i, _, _ in RULES])
def test_rule_names_file_and_line(validate: Validate, text: str, expected: str) -> None:
    assert_refused_at_mark(validate, text, expected)


def test_unclosed_flow_names_where_it_opened(validate: Validate) -> None:
    text = edit("    gpus: [1]\n", "    gpus: [1\n")
    path, outcome = validate(text)
    ((_line, message),) = outcome.problems(path)
    assert outcome.code == 1
    assert "flow sequence that starts at line 9" in message


def test_one_wrong_value_is_one_problem(validate: Validate) -> None:
    """A value that fits none of a field's types is reported once, not once per type."""
    path, outcome = validate(edit("    port: 11501\n", "    port: 11501\n    env: {OLLAMA_DEBUG: [1]}\n"))
    assert outcome.code == 1
    assert outcome.problems(path) == [
        (8, "containers.llama-a.env.OLLAMA_DEBUG: Input should be a valid string or a valid integer"
            " or a valid number or a valid boolean"),
    ]


def test_several_problems_are_all_reported_in_line_order(validate: Validate) -> None:
    text = edit("    port: 11502\n", "    port: 11501\n")
    text = edit("    fallback: [qwen2.5:7b]\n", "    fallback: [nope]\n", text)
    text = edit("    gpus: [0]\n", "    gpus: [-3]\n", text)
    path, outcome = validate(text)
    assert outcome.code == 1
    assert [line for line, _ in outcome.problems(path)] == [6, 10, 17]


@pytest.mark.parametrize(
    ("keep_alive", "seconds"),
    [("300", 300.0), ("-1", float("inf")), ('"-1m"', float("inf")), ("1.5", 1.5), ('"0"', 0.0), ('"1h30m"', 5400.0)],
)
def test_keep_alive_ollama_accepts(validate: Validate, keep_alive: str, seconds: float) -> None:
    """A number is seconds, a negative number or negative duration is forever."""
    from router.catalog.loader import parse_catalog

    text = edit("  keep_alive: 24h\n", f"  keep_alive: {keep_alive}\n")
    _, outcome = validate(text)
    assert outcome.code == 0, outcome.err
    model = parse_catalog(text, "c.yaml").catalog.resolve("llama3.2:3b")
    assert model is not None and model.keep_alive_seconds == seconds
    assert model.keeps_forever == (seconds == float("inf"))


def test_base_catalog_is_valid(validate: Validate) -> None:
    """The rule cases above break this one catalog; it must be clean to start with."""
    path, outcome = validate(BASE)
    assert (outcome.code, outcome.problems(path)) == (0, [])
