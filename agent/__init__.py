"""AutoMoT leaderboard agent (CARLA-free core plus a thin leaderboard shell).

Entry file for evaluators: ``agent/automot_agent.py`` (class ``AutoMoTAgent``). The contract types a driver needs
without CARLA live in ``agent.contract``. Submodules are imported explicitly; this package imports nothing so that
``import agent.contract`` stays light.
"""
