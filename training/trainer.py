"""The staged trainer behind ``automot train``.

One optimizer step = ``optim.grad_accum`` micro-batches. Data order is a seeded permutation per (stage, epoch)
(DistributedSampler, also with one process), so a resumed run skips exactly the micro-batches already consumed
and sees the same batches as an uninterrupted run; with the model, optimizer, scheduler, grad scaler and RNG
states restored, the continuation is bit-identical on the same hardware. Multi-GPU: launch with ``torchrun``;
the objective is wrapped in torch DDP.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from automot.fsio import atomic_write_text
from automot.model.refiner import apply_refiner
from automot.training.checkpoint import (
    VAL_METRICS,
    Progress,
    load_rng,
    load_trainer_state,
    prune,
    resolve_resume,
    save_checkpoint,
    save_model_dir,
    save_rng,
)
from automot.training.config import StageSection, TrainConfig
from automot.training.data import load_episodes, split_episodes
from automot.training.data.schema import DatasetError
from automot.training.data.torch_dataset import Collator, DrivingDataset, TrainBatch
from automot.training.distributed import DistInfo, barrier, init_distributed
from automot.training.lora import ADAPTER_FILE, load_lora_state, merge_lora
from automot.training.metrics import OpenLoopMetrics
from automot.training.objective import TrainingObjective
from automot.training.scalar_log import ScalarLogger
from automot.training.stages import (
    build_optimizer,
    build_refiner,
    build_scheduler,
    build_training_model,
    configure_trainable,
    trainable_parameters,
)

SHARDED_DIR = "sharded"  # FSDP checkpoints: the torch.distributed.checkpoint folder (model + optimizer)


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (after ``skip`` of this rank's indices)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds model, refiner, data and logger from a TrainConfig; ``fit`` runs the remaining stages."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, info: DistInfo | None = None) -> None:
        self.cfg = cfg
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        self.fsdp = cfg.fsdp.enabled
        self.info = info or init_distributed(cfg.device, always=self.fsdp)
        self.run_dir = Path(cfg.output_dir)
        self.resume_dir = resolve_resume(resume) if resume else None
        _seed_all(cfg.seed + self.info.rank)
        # A sharded (FSDP) checkpoint holds no model directory: build from the config, load the shards later.
        self.sharded_resume = self.resume_dir is not None and (self.resume_dir / SHARDED_DIR).is_dir()
        model_source = None if self.sharded_resume else self.resume_dir
        self.model = build_training_model(cfg.model, cfg.seed, model_source).to(self.info.device)
        if self.fsdp:
            from automot.training.fsdp import shard_model

            shard_model(
                self.model,
                mixed_precision=cfg.precision == "bf16",
                activation_checkpointing=cfg.fsdp.activation_checkpointing,
            )
        source = self.resume_dir or (Path(cfg.model.init_from) if cfg.model.init_from else None)
        self.refiner = build_refiner(self.model, cfg.refiner, source) if cfg.has_refiner else None
        if self.refiner is not None:
            self.refiner.to(self.info.device)
        self.progress = Progress()
        self.val_history: list[dict] = []
        self._resume_state: dict | None = None
        if self.resume_dir is not None:
            self._resume_state = load_trainer_state(self.resume_dir)
            self.progress = Progress(**self._resume_state["progress"])
            val_file = self.resume_dir / VAL_METRICS
            self.val_history = json.loads(val_file.read_text()) if val_file.is_file() else []
        self.data_problems: list[str] = []  # routes the readers skipped (reported, not fatal)
        self.bev_source = self.scene_filler = None  # released layout: BEV tokens per sample (training/released.py)
        if self.model.config.tokens.num_scene_tokens:
            from automot.training.released import bev_setup

            self.bev_source, self.scene_filler = bev_setup(self.model, cfg.model.checkpoint, self.info.device)
        self._build_data()
        main = self.info.is_main
        self.logger = ScalarLogger(self.run_dir / "logs", cfg.log.tensorboard, enabled=main)
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save_yaml(self.run_dir / "train_config.yaml")
        self.step_times: list[float] = []

    # ------------------------------------------------------------------ data
    def _build_data(self) -> None:
        d = self.cfg.data
        episodes = load_episodes(
            d.format, d.train, d.camera, d.frame_rate_hz, d.sample_list, d.pdm_route_path, self.data_problems
        )
        if d.val:
            train_eps, val_eps = (
                episodes,
                load_episodes(
                    d.format,
                    d.val,
                    d.camera,
                    d.frame_rate_hz,
                    d.val_sample_list,
                    pdm_route_path=d.pdm_route_path,
                    problems=self.data_problems,
                ),
            )
        else:
            train_eps, val_eps = split_episodes(episodes, d.val_fraction)
        self.bev_counts = {}  # samples per BEV path (precomputed / online / skipped)
        if self.bev_source is not None:
            from automot.training.data.bev_features import filter_samples

            for name, eps in (("train", train_eps), ("val", val_eps)):
                self.bev_counts[name] = filter_samples(eps, self.bev_source, self.data_problems)
            train_eps, val_eps = [e for e in train_eps if e.records], [e for e in val_eps if e.records]
        builder = self.model.prompt_builder()
        self.train_set = DrivingDataset(train_eps, builder, with_vqa=d.vqa, bev=self.bev_source)
        self.val_set = DrivingDataset(val_eps, builder, bev=self.bev_source) if val_eps else None
        if len(self.train_set) < d.batch_size * self.info.world_size:
            raise DatasetError(
                f"data.train: {len(self.train_set)} samples are fewer than one batch "
                f"({d.batch_size} x {self.info.world_size} ranks)"
            )
        self.collate = Collator(self.model.tokenizer.pad_token_id)

    def _loader(self, dataset: DrivingDataset, sampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.cfg.data.batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=self.collate,
            drop_last=drop_last,
            # Own generator: creating an iterator must not draw from the global RNG, or a resumed epoch would
            # shift the random stream relative to an uninterrupted run.
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _on_device(self, batch: TrainBatch) -> TrainBatch:
        """The batch on the training device, with the online rows' BEV tokens from the frozen encoder."""
        batch = batch.to(self.info.device)
        return self.scene_filler.fill(batch) if self.scene_filler is not None else batch

    def _sampler(self, dataset, shuffle: bool, seed: int) -> ResumableSampler:
        return ResumableSampler(
            dataset,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=shuffle,
        )

    def steps_per_epoch(self) -> int:
        per_rank = len(self._sampler(self.train_set, True, 0)) // self.cfg.data.batch_size
        return per_rank // self.cfg.optim.grad_accum

    # ------------------------------------------------------------------ precision
    def _autocast(self):
        p = self.cfg.precision
        if p == "fp32" or self.fsdp:  # FSDP: bf16 is the mixed-precision policy of the sharded model
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.info.device.type, dtype=dtype)

    # ------------------------------------------------------------------ main loop
    def fit(self, max_steps: int | None = None) -> dict:
        """Run the remaining stages (``max_steps``: stop after that many global steps, with a checkpoint)."""
        stopped = False
        try:
            while self.progress.stage < len(self.cfg.stages) and not stopped:
                stopped = self._run_stage(self.cfg.stages[self.progress.stage], max_steps)
            final = None
            if not stopped and self.info.is_main:
                final = self.run_dir / "final"
                save_model_dir(final, self._full_model(), self.refiner, self.cfg)
                atomic_write_text(final / VAL_METRICS, json.dumps(self.val_history, indent=2))
            elif not stopped and self.fsdp:
                self._full_model()  # collective: every rank takes part in gathering the weights
            barrier(self.info)
        finally:
            self.logger.close()
        return {"val_history": self.val_history, "final_dir": final, "global_step": self.progress.global_step}

    def _run_stage(self, stage: StageSection, max_steps: int | None) -> bool:
        """Train one stage from the current progress; True when ``max_steps`` interrupted it."""
        cfg, info, prog = self.cfg, self.info, self.progress
        configure_trainable(self.model, self.refiner, stage)
        resuming = self._resume_state is not None
        if resuming and self.resume_dir is not None and (self.resume_dir / ADAPTER_FILE).is_file():
            from safetensors.torch import load_file

            load_lora_state(self.model, load_file(str(self.resume_dir / ADAPTER_FILE)))
        if not self.fsdp:
            self.model.to(info.device)
        objective = TrainingObjective(self.model, self.refiner, cfg.loss, stage.name, stage.end_to_end)
        module = objective
        if info.enabled and not self.fsdp:
            ids = [info.device.index] if info.device.type == "cuda" else None
            module = torch.nn.parallel.DistributedDataParallel(objective, device_ids=ids, find_unused_parameters=True)
        named = trainable_parameters(self.model, self.refiner)
        optimizer = build_optimizer(named, cfg.optim, stage.lr or cfg.optim.lr)
        per_epoch = self.steps_per_epoch()
        if per_epoch == 0:
            raise ValueError("data: fewer samples than batch_size x grad_accum x ranks: no optimizer step per epoch")
        total = per_epoch * stage.epochs if stage.max_steps is None else min(stage.max_steps, per_epoch * stage.epochs)
        scheduler = build_scheduler(optimizer, cfg.optim, total)
        scaler = torch.amp.GradScaler(info.device.type) if cfg.precision == "fp16" else None
        if resuming:
            state = self._resume_state
            if self.sharded_resume:
                from automot.training.fsdp import load_sharded

                load_sharded(self.resume_dir / SHARDED_DIR, self.model, optimizer)
            else:
                optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            if state.get("world_size", info.world_size) == info.world_size:
                load_rng(self.resume_dir, info.rank)
            # else (FSDP resumed on another number of ranks): weights and optimizer are resharded; the RNG streams
            # keep this run's seeding and the per-rank data order follows the new world size.
            self._resume_state = None
        run = (module, optimizer, scheduler, scaler)
        # An epoch interrupted by max_steps right at the stage budget still gets its validation on resume.
        while prog.epoch < stage.epochs and (prog.stage_step < total or prog.step_in_epoch > 0):
            if self._train_epoch(stage, run, per_epoch, total, max_steps):
                return True
            self.validate(stage)
            prog.epoch += 1
            prog.step_in_epoch = 0
            self._checkpoint(run)
            if prog.stage_step >= total:
                break
        if stage.lora is not None:
            merge_lora(self.model)
        prog.stage += 1
        prog.epoch = prog.step_in_epoch = prog.stage_step = 0
        return False

    def _train_epoch(self, stage: StageSection, run, per_epoch: int, total: int, max_steps: int | None) -> bool:
        module, optimizer, scheduler, scaler = run
        cfg, info, prog = self.cfg, self.info, self.progress
        accum = cfg.optim.grad_accum
        sampler = self._sampler(self.train_set, True, cfg.seed + 1000 * prog.stage)
        sampler.set_epoch(prog.epoch)
        sampler.skip = prog.step_in_epoch * accum * cfg.data.batch_size
        batches = iter(self._loader(self.train_set, sampler, drop_last=True))
        module.train()
        steps = min(per_epoch, total - prog.stage_step + prog.step_in_epoch)
        bar = None
        if info.is_main and cfg.log.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=prog.step_in_epoch, desc=f"{stage.name} e{prog.epoch}", leave=False)
        window: dict[str, list[float]] = {}
        try:
            while prog.step_in_epoch < steps:
                t0 = time.perf_counter()
                parts = self._optimizer_step(module, optimizer, scheduler, scaler, batches, accum)
                self.step_times.append(time.perf_counter() - t0)
                prog.step_in_epoch += 1
                prog.stage_step += 1
                prog.global_step += 1
                for k, v in parts.items():
                    window.setdefault(k, []).append(v)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['loss']:.3f}")
                if prog.global_step % cfg.log.every_steps == 0 or prog.step_in_epoch == steps:
                    logged = {k: sum(v) / len(v) for k, v in window.items()}
                    logged["lr"] = scheduler.get_last_lr()[0]
                    logged["step_time_s"] = self.step_times[-1]
                    self.logger.log(prog.global_step, logged, tag=f"train/{stage.name}")
                    window = {}
                every = cfg.checkpoint.every_steps
                if every and prog.global_step % every == 0 and prog.step_in_epoch < steps:
                    self._checkpoint(run)
                if max_steps is not None and prog.global_step >= max_steps:
                    self._checkpoint(run)
                    return True
        finally:
            if bar is not None:
                bar.close()
        return False

    def _optimizer_step(self, module, optimizer, scheduler, scaler, batches, accum: int) -> dict[str, float]:
        info = self.info
        sums: dict[str, float] = {}
        for micro in range(accum):
            batch: TrainBatch = self._on_device(next(batches))
            sync = contextlib.nullcontext()
            if self.fsdp:
                from automot.training.fsdp import set_gradient_sync

                set_gradient_sync(self.model, micro == accum - 1)  # reduce-scatter once per optimizer step
            elif info.enabled and micro < accum - 1:
                sync = module.no_sync()  # all-reduce gradients once per optimizer step
            with sync:
                with self._autocast():
                    loss, parts = module(batch)
                scaled = loss / accum
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / accum
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) / accum
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.cfg.optim.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            sums["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return sums

    # ------------------------------------------------------------------ validation and checkpoints
    @torch.no_grad()
    def validate(self, stage: StageSection | None = None) -> dict:
        """Open-loop metrics on the validation set (refined ones too when a refiner exists)."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        model = self.model
        was_training = model.training
        model.eval()
        raw, refined = OpenLoopMetrics(), OpenLoopMetrics()
        loader = self._loader(self.val_set, self._sampler(self.val_set, False, 0), drop_last=False)
        for batch in loader:
            batch = self._on_device(batch)
            with self._autocast():
                out = model(batch.observation, batch.state)
            raw.update(out.path, out.waypoints, batch.path, batch.waypoints, out.decision_text, batch.decision_text)
            if self.refiner is not None:
                self.refiner.eval()
                with self._autocast():
                    ref = apply_refiner(out, self.refiner)
                refined.update(ref.path, ref.waypoints, batch.path, batch.waypoints)
        raw.all_reduce()
        metrics = raw.compute()
        if self.refiner is not None:
            refined.all_reduce()
            metrics.update({k: v for k, v in refined.compute("refined_").items() if "decision" not in k})
        model.train(was_training)
        prog = self.progress
        row = {"stage": stage.name if stage else None, "epoch": prog.epoch, "global_step": prog.global_step}
        row.update(metrics)
        self.val_history.append(row)
        self.logger.log(prog.global_step, metrics, tag="val")
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / VAL_METRICS, json.dumps(self.val_history, indent=2))
        return row

    def _full_model(self):
        """The model with full (unsharded) weights: itself, or under FSDP a plain copy on rank 0 (collective)."""
        if not self.fsdp:
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.info.is_main:
            return None
        plain = build_training_model(self.cfg.model, self.cfg.seed)
        plain.load_state_dict(full)
        return plain

    def _checkpoint(self, run) -> Path:
        if self.fsdp:
            return self._checkpoint_sharded(run)
        _, optimizer, scheduler, scaler = run
        info = self.info
        path = self.run_dir / "checkpoints" / f"step_{self.progress.global_step:07d}"
        if info.is_main:
            path = save_checkpoint(
                self.run_dir,
                self.model,
                self.refiner,
                self.cfg,
                self.progress,
                optimizer,
                scheduler,
                scaler,
                self.val_history,
            )
            prune(self.run_dir, self.cfg.checkpoint.keep_last)
        barrier(info)
        if not info.is_main:
            save_rng(path, info.rank)
        barrier(info)
        return path

    def _checkpoint_sharded(self, run) -> Path:
        """FSDP checkpoint: model + optimizer as a torch.distributed.checkpoint folder (``sharded/``, every rank
        writes its shard) plus trainer_state.pt (progress, scheduler, world size), train_config.yaml,
        val_metrics.json and the RNG states; written in a hidden folder renamed when complete."""
        from automot.fsio import TMP_SUFFIX, atomic_path
        from automot.training.checkpoint import TRAIN_CONFIG, TRAINER_STATE
        from automot.training.fsdp import save_sharded

        _, optimizer, scheduler, _ = run
        info = self.info
        final = self.run_dir / "checkpoints" / f"step_{self.progress.global_step:07d}"
        tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
        if info.is_main:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier(info)
        save_sharded(tmp / SHARDED_DIR, self.model, optimizer)
        save_rng(tmp, info.rank)
        barrier(info)  # every rank's files are in place before rank 0 renames the folder
        if info.is_main:
            with atomic_path(tmp / TRAINER_STATE) as path:
                torch.save(
                    {
                        "progress": asdict(self.progress),
                        "optimizer": None,
                        "scheduler": scheduler.state_dict(),
                        "scaler": None,
                        "world_size": info.world_size,
                    },
                    path,
                )
            self.cfg.save_yaml(tmp / TRAIN_CONFIG)
            atomic_write_text(tmp / VAL_METRICS, json.dumps(self.val_history, indent=2))
            if final.exists():
                import shutil

                shutil.rmtree(final)
            tmp.rename(final)
            prune(self.run_dir, self.cfg.checkpoint.keep_last)
        barrier(info)
        return final

    def summary(self) -> dict:
        """Step-time statistics of this process (for reports)."""
        times = self.step_times[1:] or self.step_times  # the first step includes one-off warm-up
        mean = sum(times) / len(times) if times else 0.0
        return {"steps": len(self.step_times), "mean_step_s": mean, "progress": asdict(self.progress)}
