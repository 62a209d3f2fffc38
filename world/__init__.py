"""Embedded closed-loop world: highway-env roads and traffic driven through the CARLA leaderboard agent contract.

Entry points: ``world.runner.run_route`` (one scored route, writes results.json), ``world.routes.list_routes`` /
``load_route`` (named routes in ``leaderboard_configs/routes``), ``automot drive`` (``world.cli``) and the privileged
expert agent file ``world/expert_agent.py``.
"""
