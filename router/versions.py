"""Ollama releases: parsing the version a container reports, and which
release first served each endpoint the router forwards
(docs/ollama-wire-2026.md §1). An older Ollama has no route for such an
endpoint (it answers `404 page not found`), so the router never sends it one.
"""

from __future__ import annotations

Version = tuple[int, int, int]

# The first release that serves each endpoint; endpoints not listed are older than any supported Ollama.
REQUIRED: dict[str, Version] = {
    "/v1/responses": (0, 13, 3),
    "/v1/messages": (0, 14, 0),
    "/v1/audio/transcriptions": (0, 20, 0),
}


def parse_version(text: str | None) -> Version | None:
    """`0.32.15` -> (0, 32, 15); a pre-release counts as its release (`0.33.0-rc2` -> (0, 33, 0)).

    None when the text is no release number, and for `0.0.0`: what an Ollama
    built from source reports (the release number is set only by the release
    build), which has every feature of its commit. A container whose version is
    None is never held back by the version gate."""
    if not text:
        return None
    parts = text.strip().removeprefix("v").split("-", 1)[0].split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        return None
    major, minor, patch = (int(p) for p in parts)
    if (major, minor, patch) == (0, 0, 0):
        return None
    return major, minor, patch


def format_version(version: Version) -> str:
    return ".".join(map(str, version))
