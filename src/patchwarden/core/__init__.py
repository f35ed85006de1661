"""Pure domain logic: versions, OSV evaluation, matching, risk, windows, rollout decisions.

Nothing here performs I/O, reads the clock or imports store/feeds/cli/server; callers
pass data and ``now`` in and get plain values back.
"""
