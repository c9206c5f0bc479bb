"""A stand-alone Ollama server emulator (wire-faithful, with fault injection).

See `server.py` for the public entry points and `docs/ollama-wire.md`
for the behaviour it reproduces (bare section numbers in this package's
comments, such as "(7.4)", are that document's). Only pure helpers are
shared with the rest of the package (model-name grammar, keep_alive
durations, wire constants).
"""
