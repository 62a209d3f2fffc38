"""A fake CARLA server for running the real leaderboard evaluators offline (tests/world/test_real_evaluators.py).

Only what needs a simulator is replaced: ``carla.Client`` and the world / map / actors / sensors behind it
(``sim.py``) and the route scenario (``scenario.py``: a straight road through the route's XML keypoints, scored
by the real scenario_runner criteria). ``bootstrap.py`` installs them and calls the real
``leaderboard_evaluator.main()`` with the real argv, so argument parsing, agent loading by file path,
AgentWrapper sensor set-up and validation, SensorInterface, ScenarioManager with its watchdogs, RouteIndexer and
StatisticsManager all run upstream. Sensor measurements are subclasses of the ``carla.libcarla`` measurement
types (the SensorInterface dispatches on ``isinstance``), built in Python without a server.
"""
