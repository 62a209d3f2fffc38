"""`automot eval`: full route-file evaluations (embedded or CARLA, one machine or a Ray cluster), merge, metrics, report.

Layering: uses `automot.world` (embedded runs, the evaluator command) and nothing above it.
"""
