"""A stand-alone Ollama server emulator (wire-faithful, with fault injection).

See `server.py` for the public entry points and `/work/shared/ollama-api.md`
for the behaviour it reproduces. Only pure helpers are shared with the rest
of the package (model-name grammar, keep_alive durations, wire constants).
"""
