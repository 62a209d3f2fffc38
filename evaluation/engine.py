"""The Ray engine of ``automot eval``: workers, scheduling, retries, the driver loop and live progress.

CARLA world: one :class:`RouteWorker` actor per GPU slot (``--gpus`` x ``--workers-per-gpu``, or the cluster's
GPUs with ``--ray-address``). A worker claims a port block (automot.evaluation.ports), owns one simulator
(automot.evaluation.simulator) on those ports and its GPU (``-graphicsadapter`` / ``CUDA_VISIBLE_DEVICES``, which
the evaluator and so the agent inherit), and runs one route at a time: health-check / (re)start the server, run the
evaluator for that route with a watchdog (``--route-timeout``), retry up to ``--max-retries`` times after a crash,
hang or non-zero exit (restarting the server when it stopped answering), and finally commit the route folder
(automot.evaluation.records); after the last retry the route is committed as failed, score 0, with the reason.

Embedded world: one Ray task per (route, seed), no simulator; at most ``workers`` at once.

The driver hands routes out longest first to whichever worker is free; a worker that dies (its process killed)
is replaced, and its route goes back to the queue (counted as an attempt). Everything is written by the workers
straight into ``DIR`` (a shared folder on a multi-node cluster).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automot.evaluation import records
from automot.evaluation.attempt import attempt_outcome, evaluator_command, read_json, run_evaluator
from automot.evaluation.ports import kill_servers_on_port
from automot.evaluation.progress import Progress, say_stderr
from automot.evaluation.records import Job
from automot.evaluation.simulator import Simulator, SimulatorFailed, SimulatorSpec


@dataclass
class EvalConfig:
    """Everything a worker needs (sent to Ray workers, so plain data only)."""

    out: str
    world: str = "carla"
    routes: str = ""
    agent: str = ""
    agent_config: str = ""
    track: str = "SENSORS"
    flavour: str | None = None
    repetitions: int | None = None
    max_retries: int = 3
    route_timeout: float = 7200.0
    simulator: SimulatorSpec = field(default_factory=SimulatorSpec)
    evaluator_command: list[str] | None = None  # replaces `python leaderboard_evaluator.py` (tests: a stand-in)
    leaderboard_root: str | None = None
    scenario_runner_root: str | None = None
    ticks: int | None = None  # embedded: tick limit per route
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the evaluator / embedded task
    record_extra: dict[str, Any] = field(default_factory=dict)  # in every record.json: config / checkpoint hashes
    # A fresh server every N routes (1: every route, as LEAD does against the rendering bugs of a long-lived CARLA;
    # 0: only after a failure)
    restart_server_every: int = 1


# -- one route against one simulator --------------------------------------------------------------------------


def _summary(job: Job, results: dict, attempts: int, reasons: list[str], failed: bool, t0: float, **extra) -> dict:
    recs = records.route_records(results)
    return {
        "job_id": job.job_id,
        "route_id": job.route_id,
        "seed": job.seed,
        "status": "failed" if failed else "done",
        "route_status": recs[0].get("status") if recs else None,
        "score": records.score_of(results),
        "attempts": attempts,
        "failure_reason": reasons[-1] if failed and reasons else None,
        "attempt_errors": reasons,
        "wall_s": round(time.monotonic() - t0, 3),
        # the automot drive line that reproduces the route (embedded world; world/runner.py reproduce_command)
        "command": ((recs[0].get("meta") or {}).get("command") if recs else None),
        **extra,
    }


class RouteRunner:
    """The body of a CARLA-world worker (a Ray actor wraps it; tests may use it directly)."""

    def __init__(self, cfg: EvalConfig, slot: int, gpu: str | None, probe: Callable | None = None) -> None:
        from automot.evaluation.ports import claim_block

        os.environ.update(cfg.env)  # the driver's AUTOMOT_* settings (a Ray worker has the raylet's environment)
        self.cfg, self.slot = cfg, slot
        if gpu is None:  # a Ray GPU slot: the GPU Ray gave this actor
            gpu = _ray_gpu()
        self.gpu = gpu
        self.block = claim_block()
        logs = Path(cfg.out) / ".eval" / "simulators"
        self.sim = Simulator(
            cfg.simulator,
            self.block.ports,
            gpu,
            logs / f"slot{slot}-port{self.block.ports.rpc}.log",
            probe=probe,
            on_group=self._sim_group,
        )
        self.evaluator_pgid: int | None = None
        self.routes_on_server = 0
        # The Bench2Drive fork starts (and kills) its own CarlaUE4.sh on the --port we give it (our block's).
        self.external_server = cfg.flavour == "bench2drive" and not cfg.simulator.command
        self._write_worker_file()

    def _sim_group(self, pgid: int | None) -> None:
        self.block.record_group(pgid)
        self._write_worker_file()

    def _evaluator_group(self, pgid: int | None) -> None:
        self.evaluator_pgid = pgid
        self._write_worker_file()

    def _write_worker_file(self) -> None:
        """DIR/.eval/workers/slot<N>.json: where this worker's process groups are, for the driver to end them if
        the worker is killed (its direct children die with it; this covers what they started)."""
        info = {**self.info(), "evaluator_pgid": self.evaluator_pgid}
        records.atomic_write_json(worker_file(self.cfg.out, self.slot), info)

    def info(self) -> dict:
        return {
            "slot": self.slot,
            "gpu": self.gpu,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "ports": asdict(self.block.ports),
            "simulator_pgid": self.sim.pgid,
        }

    def run(self, job: Job, prior_attempts: int = 0) -> dict:
        cfg, t0 = self.cfg, time.monotonic()
        if records.is_complete(cfg.out, job.job_id):
            return {**(records.read_record(cfg.out, job.job_id) or {}), "skipped": True}
        stage = records.new_stage(cfg.out, job.job_id)
        log = stage / "evaluator.log"
        reasons: list[str] = []
        attempts = prior_attempts
        results: dict = {}
        while attempts <= cfg.max_retries:
            attempts += 1
            for name in (records.RESULTS, "live_results.json"):
                (stage / name).unlink(missing_ok=True)
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"=== attempt {attempts} (worker slot {self.slot}, port {self.block.ports.rpc})\n")
            if not self.external_server:
                try:
                    self.sim.ensure()
                except SimulatorFailed as exc:
                    reasons.append(f"attempt {attempts}: simulator: {exc}")
                    continue
            argv, env, cwd = evaluator_command(cfg, job, stage, self.block.ports, self.gpu)
            code, hung = run_evaluator(argv, env, cwd, log, cfg.route_timeout, on_start=self._evaluator_group)
            if self.external_server:  # the fork's server (own session) on our block's port: end it, only it
                kill_servers_on_port(self.block.ports.rpc)
            reason = attempt_outcome(stage, code, hung, cfg.route_timeout, job)
            if reason is None:
                results = read_json(stage / records.RESULTS) or {}
                break
            reasons.append(f"attempt {attempts}: {reason}")
            if hung or not self.sim.healthy():
                self.sim.stop()  # restarted by the next attempt's ensure()
        failed = not results
        if failed:
            reason = reasons[-1] if reasons else "no attempt left"
            results = records.failure_results(job, f"failed after {attempts} attempt(s); {reason}", job.length)
            records.atomic_write_json(stage / records.RESULTS, results)
        summary = _summary(job, results, attempts, reasons, failed, t0, worker=self.info(), **cfg.record_extra)
        committed = records.commit_stage(stage, cfg.out, job.job_id, summary)
        self.routes_on_server += 1
        every = cfg.restart_server_every
        if (every and self.routes_on_server >= every) or (not every and failed):
            self.sim.stop()  # the next route's ensure() starts a fresh one
            self.routes_on_server = 0
        return summary if committed else {**(records.read_record(cfg.out, job.job_id) or {}), "skipped": True}

    def close(self) -> None:
        self.sim.stop()
        self.block.release()


def worker_file(out: str | os.PathLike, slot: int) -> Path:
    return Path(out) / ".eval" / "workers" / f"slot{slot}.json"


def reap_worker(out: str | os.PathLike, slot: int) -> list[int]:
    """End the simulator / evaluator process groups a killed worker of ``slot`` left on this host (each checked
    to still be that worker's by its command line naming the worker's RPC port)."""
    from automot.evaluation.ports import group_matches, kill_group

    info = read_json(worker_file(out, slot)) or {}
    if info.get("host") != socket.gethostname():
        return []
    rpc = str((info.get("ports") or {}).get("rpc", ""))
    killed = []
    for key in ("simulator_pgid", "evaluator_pgid"):
        pgid = info.get(key)
        if isinstance(pgid, int) and pgid > 1 and rpc and group_matches(pgid, rpc) and kill_group(pgid):
            killed.append(pgid)
    return killed


def _ray_gpu() -> str | None:
    try:
        import ray

        ids = ray.get_gpu_ids()
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None
    return ",".join(str(i) for i in ids) if ids else None


# -- embedded world ---------------------------------------------------------------------------------------------


def run_embedded_job(cfg: EvalConfig, job: Job) -> dict:
    """One (route, seed) of the embedded world, in-process (a Ray task calls this)."""
    from automot.clikit import InterruptFlag
    from automot.world.runner import AgentCrashed, run_route

    t0 = time.monotonic()
    if records.is_complete(cfg.out, job.job_id):
        return {**(records.read_record(cfg.out, job.job_id) or {}), "skipped": True}
    reasons: list[str] = []
    results: dict = {}
    attempts = 0
    for key, value in cfg.env.items():
        os.environ[key] = value
    while attempts <= cfg.max_retries and not results:
        attempts += 1
        stage = records.new_stage(cfg.out, job.job_id)
        os.environ["AUTOMOT_RECORD_DIR"] = str(stage)
        try:
            results = run_route(
                job.route_id, cfg.agent, cfg.agent_config, stage, ticks=cfg.ticks, seed=job.seed,
                progress=False, interrupt=InterruptFlag(),
            )  # fmt: skip
        except AgentCrashed as exc:  # a scored route (the leaderboard records an agent crash as a result)
            results = exc.results
        except Exception as exc:  # noqa: BLE001 - anything else: retry
            reasons.append(f"attempt {attempts}: {type(exc).__name__}: {exc}")
            shutil.rmtree(stage, ignore_errors=True)
    failed = not results
    if failed:
        stage = records.new_stage(cfg.out, job.job_id)
        results = records.failure_results(job, f"failed after {attempts} attempt(s); {reasons[-1]}", job.length)
        records.atomic_write_json(stage / records.RESULTS, results)
    summary = _summary(job, results, attempts, reasons, failed, t0, worker={"pid": os.getpid()}, **cfg.record_extra)
    committed = records.commit_stage(stage, cfg.out, job.job_id, summary)
    return summary if committed else {**(records.read_record(cfg.out, job.job_id) or {}), "skipped": True}


# -- the driver ---------------------------------------------------------------------------------------------------


def run_jobs(
    cfg: EvalConfig,
    jobs: list[Job],
    slots: list[str | None],
    *,
    ray_gpus_per_slot: float = 0.0,
    workers: int = 1,
    progress_every: float = 30.0,
    say: Callable[[str], None] = say_stderr,
    on_finish: Callable[[dict, Progress], None] | None = None,
) -> list[dict]:
    """Run every job not complete in ``cfg.out``; return the summaries of this run. Ray must be initialised.

    ``slots``: the GPU of each CARLA worker (None: Ray assigns one, ``ray_gpus_per_slot`` each); ``workers``: the
    number of embedded tasks at once; ``on_finish(summary, progress)`` runs in the driver after every route
    recorded in this run (the live report)."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    todo = records.longest_first([j for j in jobs if not records.is_complete(cfg.out, j.job_id)])
    prog = Progress(total=len(jobs), done=len(jobs) - len(todo))
    for j in jobs:
        rec = records.read_record(cfg.out, j.job_id)
        if rec is not None:
            prog.scores.append(float(rec.get("score", 0.0)))
            prog.failed += rec.get("status") == "failed"
    queue = deque(todo)
    lost: dict[str, int] = {}  # attempts a job lost with a killed worker
    summaries: list[dict] = []
    inflight: dict[Any, tuple[int, Job]] = {}
    started: dict[Any, float] = {}  # embedded: when each task was handed out (the route watchdog)
    actors: dict[int, Any] = {}

    if cfg.world == "embedded":
        task = ray.remote(num_cpus=1, max_retries=0)(run_embedded_job)
        free = list(range(max(1, workers)))

        def submit(slot: int, job: Job):
            return task.remote(cfg, job)
    else:
        opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
        if ray_gpus_per_slot:
            opts["num_gpus"] = ray_gpus_per_slot
        actor_cls = ray.remote(RouteRunner).options(**opts)

        def new_actor(slot: int):
            actors[slot] = actor_cls.remote(cfg, slot, slots[slot])

        for s in range(len(slots)):
            new_actor(s)
        free = list(range(len(slots)))

        def submit(slot: int, job: Job):
            return actors[slot].run.remote(job, lost.get(job.job_id, 0))

    def record_lost(job: Job, why: str) -> None:
        lost[job.job_id] = lost.get(job.job_id, 0) + 1
        if lost[job.job_id] > cfg.max_retries:
            stage = records.new_stage(cfg.out, job.job_id)
            reason = f"failed after {lost[job.job_id]} attempt(s); {why}"
            results = records.failure_results(job, reason, job.length)
            records.atomic_write_json(stage / records.RESULTS, results)
            summary = _summary(job, results, lost[job.job_id], [why], True, time.monotonic(), **cfg.record_extra)
            if records.commit_stage(stage, cfg.out, job.job_id, summary):
                finish(summary)
        else:
            queue.appendleft(job)

    def finish(summary: dict) -> None:
        summaries.append(summary)
        prog.done += 1
        prog.finished_this_run += 1
        prog.failed += summary.get("status") == "failed"
        prog.scores.append(float(summary.get("score", 0.0)))
        note = f" ({summary['failure_reason']})" if summary.get("failure_reason") else ""
        say(f"eval: route {summary['job_id']}: {summary['status']}, DS {summary.get('score', 0.0):.2f}{note}")
        if on_finish is not None:  # the live report; a failure there must not stop the evaluation
            prog.running = len(inflight)
            try:
                on_finish(summary, prog)
            except Exception as exc:  # noqa: BLE001
                say(f"eval: live report not updated: {type(exc).__name__}: {exc}")

    say(prog.line())
    last = time.monotonic()
    clean = False
    changed = False
    try:
        while queue or inflight:
            while free and queue:
                slot = free.pop(0)
                job = queue.popleft()
                ref = submit(slot, job)
                inflight[ref], started[ref] = (slot, job), time.monotonic()
            prog.running = len(inflight)
            if changed or time.monotonic() - last >= progress_every:
                say(prog.line())
                last, changed = time.monotonic(), False
            wait_s = min(progress_every, 5.0, max(cfg.route_timeout / 4, 0.5))
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=wait_s)
            if cfg.world == "embedded":  # the watchdog a CARLA route has in run_evaluator, for in-process routes
                now = time.monotonic()
                for ref in [r for r in inflight if r not in ready and now - started[r] > cfg.route_timeout]:
                    slot, job = inflight.pop(ref)
                    ray.cancel(ref, force=True)  # kills the worker process the route runs in (a new one replaces it)
                    why = f"route hung: killed by the watchdog after {cfg.route_timeout:g} s"
                    say(f"eval: route {job.job_id}: {why}")
                    free.append(slot)
                    record_lost(job, why)
            for ref in ready:
                slot, job = inflight.pop(ref)
                try:
                    summary = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as exc:
                    why = f"worker died ({type(exc).__name__})"
                    say(f"eval: route {job.job_id}: {why}; worker slot {slot} replaced")
                    if cfg.world != "embedded":
                        reap_worker(cfg.out, slot)
                        new_actor(slot)
                    free.append(slot)
                    record_lost(job, why)
                    continue
                except RayTaskError as exc:  # a bug in the worker code: the route is not lost, it is retried
                    free.append(slot)
                    record_lost(job, f"worker error: {str(exc).strip().splitlines()[-1]}")
                    continue
                free.append(slot)
                if summary.get("skipped"):
                    continue
                finish(summary)
            changed = bool(ready)
        prog.running = 0
        say(prog.line())
        clean = True
    finally:
        for actor in actors.values():
            if clean:  # idle actors stop their simulators; a busy one (interrupted run) is killed at once
                try:
                    ray.get(actor.close.remote(), timeout=30)
                except Exception:  # noqa: BLE001 - dead: its simulator died with it (PDEATHSIG) or is reaped later
                    pass
            ray.kill(actor)
        if cfg.world != "embedded":
            for slot in actors:
                reap_worker(cfg.out, slot)
    if clean:
        records.remove_stale_stages(cfg.out)  # folders of routes whose worker was killed (they were re-run)
    return summaries
