"""Provisioning: the catalog's managed containers as Docker containers (`up`, `down`,
`status`) or as a Compose stack (`compose`).

spec.py (what a container becomes, and its hash) · docker.py (reconcile, remove) ·
pull.py (pull missing models; also serve's start hook) · preload.py (load them) ·
status.py (Docker state + /api/ps) · compose.py (render) · report.py (tables, bars) ·
errors.py (Docker's errors in words a user can act on) · command.py (the CLI).
"""
