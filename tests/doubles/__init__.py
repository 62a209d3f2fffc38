"""Test doubles and fixtures shared by the suite: fake runtimes and agents, scene inputs, the fp64 layer reference,
the real-evaluator harness with its fake CARLA, and the stand-in simulator/evaluator of `automot eval`.

``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so tests import these as ``from doubles import X``.
"""
