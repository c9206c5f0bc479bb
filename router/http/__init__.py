"""What every request shares, whoever handles it: its record, its errors in
each API's shape, the API adapters, and reading its body.

Both `router.server` (handlers, proxy) and `router.access` (keys, limits)
import from here; nothing here imports either of them.
"""
