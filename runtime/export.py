"""Export the fast step (action expert on a fixed-capacity padded KV snapshot) to ONNX / TensorRT, with parity.

The exported graph has static shapes: keys/values [L, 1, Hkv, capacity, D], pad_mask [1, capacity] (True = valid
prefix token) and next_position [1] (the first position after the valid prefix). The runtime's double buffers
have exactly these shapes, so a refresh only rewrites buffer contents. Every export is validated against the
eager torch module (max abs difference and cosine similarity per output) and the result is written to
``DIR/parity.json``; ``automot export`` exits non-zero if parity fails.
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automot.errors import UsageError
from automot.fsio import StagedFiles, atomic_write_bytes
from automot.runtime.engines import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    SCENE_INPUT_NAMES,
    SCENE_OUTPUT_NAME,
    OnnxRuntimeEngine,
    OnnxSceneEngine,
    TensorRTEngine,
    TensorRTSceneEngine,
    require_tensorrt,
    trt_logger,
)
from automot.runtime.scene import attached_scene_encoder, scene_input_shapes

# fp32 ONNX Runtime vs eager torch; reduced-precision TensorRT engines get their own, looser tolerance.
TOLERANCES = {
    "fp32": {"max_abs": 1e-4, "cosine_min": 0.9999},
    "fp16": {"max_abs": 5e-2, "cosine_min": 0.999},
    "bf16": {"max_abs": 1e-1, "cosine_min": 0.995},
}


class ExportError(UsageError, RuntimeError):
    """A user-facing export problem (bad preset, missing checkpoint, failed parity): the message says what to do."""


def fast_inputs_from_model(model: Any, capacity: int, seed: int = 0) -> tuple[torch.Tensor | None, ...]:
    """Real fast-step inputs: a prefill of the model's dummy observation, padded to ``capacity``."""
    from automot.model import make_dummy_inputs

    obs, state = make_dummy_inputs(model.config, batch=1, seed=seed)
    with torch.inference_mode():
        snap = model.prefill(obs, capacity=capacity)
    return (snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed, state.scene)


def synthetic_fast_inputs(
    reference: tuple[torch.Tensor | None, ...], valid: int, seed: int
) -> tuple[torch.Tensor | None, ...]:
    """Random KV with ``valid`` real tokens (rest masked), random targets/speed: exercises the pad mask."""
    gen = torch.Generator().manual_seed(seed)
    keys, values, pad_mask, next_position, target_points, speed, scene = reference
    assert keys is not None and values is not None and pad_mask is not None
    assert next_position is not None and target_points is not None and speed is not None

    def rand_like(t: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(t.shape, generator=gen) * scale).to(dtype=t.dtype, device=t.device)

    mask = torch.zeros_like(pad_mask)
    mask[:, :valid] = True
    return (
        rand_like(keys),
        rand_like(values),
        mask,
        torch.full_like(next_position, valid),
        rand_like(target_points, 10.0),
        rand_like(speed, 3.0).abs(),
        None if scene is None else rand_like(scene),
    )


def export_onnx(
    model: Any, path: str | Path, capacity: int | None = None, opset: int = 17, dynamo: bool = False
) -> Path:
    """Export ``model.fast_step_module()`` with static fixed-capacity inputs to ``path`` (an .onnx file).

    The file (and any external-data file next to it) is written in a hidden staging folder and moved to ``path``
    when complete (automot.fsio.StagedFiles): an existing file is replaced whole or not at all.
    """
    path = Path(path)
    with StagedFiles(path.parent) as stage:
        _export_fast_onnx(model, stage.path(path.name), capacity, opset, dynamo)
    return path


def _export_fast_onnx(model: Any, path: Path, capacity: int | None, opset: int, dynamo: bool) -> Path:
    capacity = capacity or model.config.max_prefix_tokens
    module = model.fast_step_module().eval()
    inputs = fast_inputs_from_model(model, capacity)
    args = inputs if inputs[-1] is not None else inputs[:-1]
    names = list(INPUT_NAMES[: len(args)])
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is legacy, and traces raise TracerWarnings on shape reads.
        warnings.simplefilter("ignore")
        # Ordinary (not inference-mode) copies of the example inputs: the trace then takes the fast step's two-part
        # prefix attention (model/mot.py), which autograd cannot run on inference-mode snapshot tensors.
        args = [a.clone() if isinstance(a, torch.Tensor) and a.is_inference() else a for a in args]
        torch.onnx.export(
            module,
            tuple(args),
            str(path),
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=dynamo,
        )
    return path


def compare(
    reference: list[np.ndarray], candidate: list[np.ndarray], names: tuple[str, ...] = OUTPUT_NAMES
) -> dict[str, dict[str, float]]:
    """Per-output max abs difference and cosine similarity (flattened, float64)."""
    out = {}
    for name, ref, got in zip(names, reference, candidate):
        a = np.asarray(ref, dtype=np.float64).ravel()
        b = np.asarray(got, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise ExportError(f"output {name!r}: shape {np.shape(got)} differs from torch {np.shape(ref)}")
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
        out[name] = {"max_abs": float(np.max(np.abs(a - b))) if a.size else 0.0, "cosine": cosine}
    return out


def validate_parity(model: Any, engine: Any, capacity: int, precision: str = "fp32") -> dict[str, Any]:
    """Run torch and ``engine`` on a real padded prefill (a seed other than the export's) and on synthetic KV."""
    module = model.fast_step_module().eval()
    real = fast_inputs_from_model(model, capacity, seed=1)
    assert real[2] is not None
    valid = int(real[2][0].sum())
    cases = {
        "prefill_seed1": real,
        "synthetic_half": synthetic_fast_inputs(real, max(1, capacity // 2), seed=2),
        "synthetic_short": synthetic_fast_inputs(real, max(1, min(valid, capacity) // 3), seed=3),
    }
    device = next(model.parameters()).device
    results = {}
    for case, inputs in cases.items():
        inputs = tuple(None if t is None else t.to(device) for t in inputs)  # dummy states are built on the CPU
        with torch.inference_mode():
            ref = [t.float().cpu().numpy() for t in module(*inputs)]
        results[case] = compare(ref, list(engine(*inputs)))
    tol = TOLERANCES[precision]
    max_abs = max(v["max_abs"] for case in results.values() for v in case.values())
    cos_min = min(v["cosine"] for case in results.values() for v in case.values())
    return {
        "backend": engine.name,
        "reference": "torch (eager fast_step_module, fp32)" if precision == "fp32" else "torch (eager)",
        "precision": precision,
        "capacity": capacity,
        "max_abs": max_abs,
        "cosine_min": cos_min,
        "tolerance": tol,
        "passed": bool(max_abs <= tol["max_abs"] and cos_min >= tol["cosine_min"]),
        "cases": results,
    }


# ---------------------------------------------------------------------------------------------------- BEV encoder
def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) averaging matrix with adaptive_avg_pool's windows [floor(i*n/m), ceil((i+1)*n/m))."""
    mat = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


class StaticAdaptiveAvgPool2d(torch.nn.Module):
    """``AdaptiveAvgPool2d`` as two MatMuls with constant pooling matrices (exact for any input size).

    The TorchScript ONNX exporter cannot export adaptive_avg_pool2d once it loses the input's static size (it does
    inside the RegNet branches); the input sizes are fixed at export time, so the windows become constants.
    """

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _pool_matrix(int(x.shape[-2]), self.output_size[0]).to(x.device, x.dtype)
        cols = _pool_matrix(int(x.shape[-1]), self.output_size[1]).to(x.device, x.dtype)
        return torch.matmul(torch.matmul(rows, x), cols.t())


@contextlib.contextmanager
def _static_pools(encoder: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily swap the encoder's adaptive average pools for ``StaticAdaptiveAvgPool2d`` (no weight copy)."""
    saved = {}
    for name, module in list(encoder.named_children()):
        if isinstance(module, torch.nn.AdaptiveAvgPool2d):
            size = module.output_size
            size = (size, size) if isinstance(size, int) else tuple(size)
            saved[name] = module
            setattr(encoder, name, StaticAdaptiveAvgPool2d(size))  # type: ignore[arg-type]
    try:
        yield encoder
    finally:
        for name, module in saved.items():
            setattr(encoder, name, module)


def scene_inputs_for_export(bev_config: Any, seed: int = 0, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-1 float32 (rgb 0..255, sparse LiDAR histogram) at the sizes ``bev_config`` implies."""
    shapes = scene_input_shapes(bev_config)
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand((1, *shapes["rgb"]), generator=gen) * 255.0
    hits = torch.rand((1, *shapes["lidar"]), generator=gen) < 0.2
    lidar = hits.float() * torch.rand((1, *shapes["lidar"]), generator=gen)
    return rgb.to(device), lidar.to(device)


def export_bev_onnx(encoder: torch.nn.Module, path: str | Path, opset: int = 17, dynamo: bool = False) -> Path:
    """Export the BEV encoder (inputs ``rgb``, ``lidar`` float32 at the config's sizes -> ``bev_features``),
    staged and moved to ``path`` when complete like :func:`export_onnx`."""
    path = Path(path)
    with StagedFiles(path.parent) as stage:
        _export_bev_onnx(encoder, stage.path(path.name), opset, dynamo)
    return path


def _export_bev_onnx(encoder: torch.nn.Module, path: Path, opset: int, dynamo: bool) -> Path:
    device = next(encoder.parameters()).device
    inputs = scene_inputs_for_export(encoder.cfg, seed=0, device=device)
    was_training = encoder.training
    encoder.eval()
    try:
        with _static_pools(encoder), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter and TracerWarnings (static shapes are intended)
            torch.onnx.export(
                encoder,
                inputs,
                str(path),
                input_names=list(SCENE_INPUT_NAMES),
                output_names=[SCENE_OUTPUT_NAME],
                opset_version=opset,
                dynamo=dynamo,
            )
    finally:
        encoder.train(was_training)
    return path


def validate_bev_parity(encoder: torch.nn.Module, engine: Any, precision: str = "fp32") -> dict[str, Any]:
    """Eager encoder vs ``engine`` on inputs other than the export's: random, empty LiDAR, saturated camera."""
    device = next(encoder.parameters()).device
    rgb1, lidar1 = scene_inputs_for_export(encoder.cfg, seed=1, device=device)
    rgb2, lidar2 = scene_inputs_for_export(encoder.cfg, seed=2, device=device)
    cases = {
        "random_seed1": (rgb1, lidar1),
        "empty_lidar": (rgb2, torch.zeros_like(lidar2)),
        "saturated_rgb": (torch.full_like(rgb2, 255.0), lidar2),
    }
    results = {}
    for case, (rgb, lidar) in cases.items():
        with torch.inference_mode():
            ref = encoder.eval()(rgb, lidar).float().cpu().numpy()
        got = engine(rgb.cpu().numpy(), lidar.cpu().numpy())
        results[case] = compare([ref], [got.float().cpu().numpy()], names=(SCENE_OUTPUT_NAME,))
    tol = TOLERANCES[precision]
    max_abs = max(r[SCENE_OUTPUT_NAME]["max_abs"] for r in results.values())
    cos_min = min(r[SCENE_OUTPUT_NAME]["cosine"] for r in results.values())
    return {
        "backend": engine.name,
        "reference": "torch (eager BEV encoder)",
        "precision": precision,
        "inputs": {k: [1, *v] for k, v in scene_input_shapes(encoder.cfg).items()},
        "output": list(ref.shape),
        "max_abs": max_abs,
        "cosine_min": cos_min,
        "tolerance": tol,
        "passed": bool(max_abs <= tol["max_abs"] and cos_min >= tol["cosine_min"]),
        "cases": results,
    }


def build_trt_engine(onnx_path: str | Path, engine_path: str | Path, precision: str = "fp16", workspace_gb: float = 4):
    """Build a serialized TensorRT engine from the ONNX file with the TensorRT 10 Python API."""
    trt = require_tensorrt()
    if precision not in ("fp32", "fp16", "bf16"):
        raise ExportError(f"TensorRT precision must be fp32, fp16 or bf16, got {precision!r}")
    builder = trt.Builder(trt_logger())
    # TensorRT 10 networks are always explicit-batch: EXPLICIT_BATCH is deprecated and ignored, so no flags.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors or 'no parser message (see the log above)'}")
    # Our exports have static shapes; a dynamic input would need an optimization profile we cannot size here.
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tuple(tensor.shape)):
            raise ExportError(
                f"{onnx_path}: input {tensor.name!r} has dynamic shape {tuple(tensor.shape)}; "
                "export it with static shapes (automot export) before building a TensorRT engine"
            )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision != "fp32":
        # FP16/BF16 builder flags (weak typing) exist in TensorRT 10 but were removed in 11 (strong typing only).
        flag = getattr(trt.BuilderFlag, precision.upper(), None)
        if flag is None:
            raise ExportError(
                f"TensorRT {trt.__version__} has no BuilderFlag.{precision.upper()} (removed in TensorRT 11): "
                "use precision fp32 or TensorRT 10.x (pip install 'tensorrt>=10,<11')"
            )
        config.set_flag(flag)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT engine build failed (see the TensorRT log above)")
    engine_path = Path(engine_path)
    atomic_write_bytes(engine_path, bytes(serialized))
    return engine_path


def load_model(preset: str | None = None, checkpoint: str | Path | None = None, device: str = "cpu") -> Any:
    """Build a preset or load a checkpoint directory (model.safetensors + config.yaml), with clear errors."""
    if (preset is None) == (checkpoint is None):
        raise ExportError("give exactly one of --preset NAME or --checkpoint DIR")
    import automot.model as model_pkg

    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_dir():
            raise ExportError(f"checkpoint directory not found: {ckpt}")
        missing = [n for n in ("model.safetensors", "config.yaml") if not (ckpt / n).is_file()]
        if missing:
            raise ExportError(f"checkpoint directory {ckpt} lacks {', '.join(missing)}")
        try:
            if (ckpt / "bev_encoder.safetensors").is_file():
                # A converted released checkpoint (model/released convert): load it with its BEV encoder attached,
                # in fp32 like load_pretrained, so both exports are validated against fp32 eager torch.
                from automot.model.released import load_converted

                return load_converted(str(ckpt), device=device, dtype=torch.float32)
            return model_pkg.load_pretrained(str(ckpt), device=device)
        except (RuntimeError, ValueError) as exc:  # PretrainedLoadError / ConfigError: name the bad tensor/field
            raise ExportError(f"cannot load checkpoint {ckpt}: {exc}") from exc
    known = _known_presets()
    if known and preset not in known:
        raise ExportError(f"unknown preset {preset!r}; known presets: {', '.join(known)}")
    try:
        return model_pkg.build_model(preset, device=device)
    except (KeyError, ValueError) as exc:
        raise ExportError(f"unknown preset {preset!r}: {exc}") from exc


def _known_presets() -> list[str]:
    try:
        from automot.model.config import PRESETS
    except ImportError:
        return []
    return sorted(PRESETS)


def export(
    model: Any,
    backend: str,
    out_dir: str | Path,
    capacity: int | None = None,
    precision: str = "fp16",
    opset: int = 17,
    dynamo: bool = False,
    source: str = "",
) -> dict[str, Any]:
    """Export to ONNX (and, for ``backend="tensorrt"``, build an engine), validate, write parity.json.

    Returns the parity report. For TensorRT the tensorrt import is checked first, so a machine without it fails
    before any work with MissingDependencyError.
    """
    if backend not in ("onnx", "tensorrt"):
        raise ExportError(f"unknown backend {backend!r}; expected onnx or tensorrt")
    if backend == "tensorrt":
        require_tensorrt()
    capacity = capacity or model.config.max_prefix_tokens
    out = Path(out_dir)
    # Every file is staged in a hidden folder inside ``out`` and moved there only when all are written (parity
    # failures included: parity.json says why); an error or a kill leaves an earlier export in ``out`` intact.
    with StagedFiles(out) as stage:
        summary = _export_staged(model, backend, stage, capacity, precision, opset, dynamo, source)
    return summary


def _export_staged(
    model: Any,
    backend: str,
    stage: StagedFiles,
    capacity: int,
    precision: str,
    opset: int,
    dynamo: bool,
    source: str,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    onnx_path = _export_fast_onnx(model, stage.path("fast_step.onnx"), capacity, opset, dynamo)
    report: dict[str, Any] = {"onnx": validate_parity(model, OnnxRuntimeEngine(onnx_path), capacity, "fp32")}
    files = {"onnx": onnx_path.name}
    if backend == "tensorrt":
        engine_path = build_trt_engine(onnx_path, stage.path(f"fast_step.{precision}.engine"), precision)
        trt_engine = TensorRTEngine(engine_path, device="cuda")
        report["tensorrt"] = validate_parity(model.to("cuda"), trt_engine, capacity, precision)
        files["tensorrt"] = engine_path.name
    parity = report["tensorrt" if backend == "tensorrt" else "onnx"]
    bev = _export_bev(model, backend, stage, precision, opset, dynamo)
    if bev is not None:
        files.update(bev.pop("files"))
    summary = {
        "source": source,
        "model": model.config.name,
        "backend": backend,
        "capacity": capacity,
        "inputs": list(INPUT_NAMES if model.config.tokens.num_scene_tokens else INPUT_NAMES[:-1]),
        "outputs": list(OUTPUT_NAMES),
        "files": files,
        "passed": all(r["passed"] for r in report.values()) and (bev is None or bev["passed"]),
        "max_abs": parity["max_abs"],
        "cosine_min": parity["cosine_min"],
        "export_s": round(time.perf_counter() - t0, 3),
        "versions": {"torch": torch.__version__, "python": platform.python_version(), **_onnx_versions()},
        "results": report,
        "bev_encoder": bev,  # None: the model has no attached BEV encoder
    }
    stage.write_text("parity.json", json.dumps(summary, indent=2))
    return summary


def _export_bev(
    model: Any, backend: str, stage: StagedFiles, precision: str, opset: int, dynamo: bool
) -> dict[str, Any] | None:
    """Export + validate the attached BEV encoder next to the fast step (``bev_encoder.onnx`` [+ ``.engine``])."""
    attached = attached_scene_encoder(model) if model.config.tokens.num_scene_tokens else None
    if attached is None:
        return None
    encoder = attached[0]
    onnx_path = _export_bev_onnx(encoder, stage.path("bev_encoder.onnx"), opset, dynamo)
    report = {"onnx": validate_bev_parity(encoder, OnnxSceneEngine(onnx_path), "fp32")}
    files = {"bev_onnx": onnx_path.name}
    if backend == "tensorrt":
        engine_path = build_trt_engine(onnx_path, stage.path(f"bev_encoder.{precision}.engine"), precision)
        encoder.to("cuda")  # the loaders keep the encoder outside the model tree: model.to("cuda") did not move it
        trt_engine = TensorRTSceneEngine(engine_path, device="cuda")
        report["tensorrt"] = validate_bev_parity(encoder, trt_engine, precision)
        files["bev_tensorrt"] = engine_path.name
    parity = report["tensorrt" if backend == "tensorrt" else "onnx"]
    return {
        "files": files,
        "inputs": parity["inputs"],
        "outputs": [SCENE_OUTPUT_NAME],
        "output_shape": parity["output"],
        "passed": all(r["passed"] for r in report.values()),
        "max_abs": parity["max_abs"],
        "cosine_min": parity["cosine_min"],
        "results": report,
    }


def _onnx_versions() -> dict[str, str]:
    versions = {}
    for name in ("onnx", "onnxruntime", "tensorrt"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    return versions
