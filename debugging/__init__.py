"""Debugging agent behaviour from a run's files: `automot inspect`, `automot replay`, `automot view`.

Layering: reads run folders written by `automot.agent` / `automot.world`; replay uses `automot.runtime` and the
agent's controllers. Nothing in the driving path imports this package.
"""
