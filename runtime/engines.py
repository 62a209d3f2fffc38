"""Fast-path engines: one call signature, four backends (eager torch, torch.compile, ONNX Runtime, TensorRT).

Every engine takes the fast-step inputs as torch tensors, exactly as ``model.fast_step_module()`` does::

    engine(keys, values, pad_mask, next_position, target_points, speed, scene) -> (path, waypoints, decision_logits)

and returns numpy arrays (float32), so the runtime treats all backends alike. ``scene`` is None when the model
has no scene tokens (the exported graph then has no ``scene`` input).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from automot.errors import EnvironmentProblem

INPUT_NAMES = ("keys", "values", "pad_mask", "next_position", "target_points", "speed", "scene")
OUTPUT_NAMES = ("path", "waypoints", "decision_logits")
# The exported BEV scene encoder (runtime/scene.py): batch-1 camera + LiDAR inputs -> (1, C, h, w) BEV feature.
SCENE_INPUT_NAMES = ("rgb", "lidar")
SCENE_OUTPUT_NAME = "bev_features"

# (path [B, n_route, 2], waypoints [B, n_waypoints, 2], decision_logits [B, n_decision, vocab]) as numpy arrays.
FastOutputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class MissingDependencyError(EnvironmentProblem):
    """An optional package needed by the selected backend is not installed (the message says how to get it)."""


class FastEngine(Protocol):
    name: str

    def __call__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        pad_mask: torch.Tensor,
        next_position: torch.Tensor,
        target_points: torch.Tensor,
        speed: torch.Tensor,
        scene: torch.Tensor | None,
    ) -> FastOutputs:
        """One fast step (``AutoMoTModel.fast_step``) on a pinned KV slot.

        keys / values [L, B, Hkv, S, D] with S = the runtime capacity, pad_mask [B, S] bool, next_position [B]
        int64, target_points [B, 2, 2], speed [B, 1], scene [B, N_scene, D_scene] or None. Returns FastOutputs.
        """
        ...

    def close(self) -> None: ...


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    # Fast path first: on CPU, .numpy() is a zero-copy view and, unlike detach()/cpu(), no dispatcher call
    # (each dispatcher call drops and re-takes the GIL, which a busy slow-path thread can delay).
    if t.device.type == "cpu" and not t.requires_grad and t.dtype not in (torch.float16, torch.bfloat16):
        return t.numpy()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.detach().cpu().numpy()


def fast_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A high-priority CUDA stream for the fast path (lower number = higher priority), None on CPU."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.Stream(device=device, priority=-1)
    return None


class TorchEngine:
    """Eager ``model.fast_step_module()`` under inference mode; on CUDA it runs on a high-priority stream."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, device: torch.device | str = "cpu") -> None:
        self.module = module.eval()
        self.device = torch.device(device)
        self.stream = fast_stream(self.device)

    def _forward(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return self.module(*inputs)

    def __call__(self, keys, values, pad_mask, next_position, target_points, speed, scene) -> FastOutputs:
        """``FastEngine.__call__``: keys / values [L, B, Hkv, S, D] ... -> (path, waypoints, logits) arrays."""
        inputs = [keys, values, pad_mask, next_position, target_points, speed, scene]
        if self.device.type != "cpu":  # the per-tick state arrives on the CPU
            inputs = [t if t is None else t.to(self.device, non_blocking=True) for t in inputs]
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            if self.stream is not None:
                self.stream.wait_stream(torch.cuda.current_stream(self.device))  # input copies were queued there
            path, waypoints, logits = self._forward(*inputs)
            if self.stream is not None:
                self.stream.synchronize()
        return _to_numpy(path), _to_numpy(waypoints), _to_numpy(logits)

    def close(self) -> None:
        pass


class TorchCompileEngine(TorchEngine):
    """``torch.compile`` of the fast-step module with static shapes (the KV buffers never change shape)."""

    name = "torch-compile"

    def __init__(self, module: torch.nn.Module, device: torch.device | str = "cpu", backend: str = "inductor") -> None:
        super().__init__(module, device)
        self.compiled = torch.compile(self.module, backend=backend, dynamic=False)

    def _forward(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return self.compiled(*inputs)


def ort_session(onnx_path: str | Path, threads: int, device: torch.device):
    """An ONNX Runtime session with its own ``threads``-wide intra-op pool and spinning disabled (CUDA EP if any)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError(
            "engine 'onnxruntime' needs the onnxruntime package: pip install onnxruntime (or pip install .[onnx])"
        ) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)


class OnnxRuntimeEngine:
    """ONNX Runtime session with its own intra-op pool, sized independently of torch's threads.

    Spinning is disabled: an idle pool thread that busy-waits would take the core the slow path is using.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int = 1, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.session = ort_session(onnx_path, threads, self.device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = set(self.input_names) - set(INPUT_NAMES)
        if unknown:
            raise ValueError(f"{onnx_path}: unexpected graph inputs {sorted(unknown)}; expected {INPUT_NAMES}")
        self.output_names = list(OUTPUT_NAMES)
        self.threads = threads

    def __call__(self, keys, values, pad_mask, next_position, target_points, speed, scene) -> FastOutputs:
        """``FastEngine.__call__``: keys / values [L, B, Hkv, S, D] ... -> (path, waypoints, logits) arrays."""
        given = {
            "keys": keys,
            "values": values,
            "pad_mask": pad_mask,
            "next_position": next_position,
            "target_points": target_points,
            "speed": speed,
            "scene": scene,
        }
        # On CPU, Tensor.numpy() shares memory: the pinned KV slot is read in place, not copied.
        feeds = {name: _to_numpy(given[name]) for name in self.input_names}
        path, waypoints, logits = self.session.run(self.output_names, feeds)
        return path, waypoints, logits

    def close(self) -> None:
        self.session = None


class TensorRTEngine:
    """A serialized TensorRT engine executed on a high-priority CUDA stream (needs ``tensorrt`` >= 10 and CUDA).

    Uses the TensorRT 10 name-based I/O API (``num_io_tensors`` / ``set_tensor_address`` / ``execute_async_v3``);
    the TensorRT 8 binding-index API is gone in 10.x.
    """

    name = "tensorrt"
    # Graph I/O this engine role expects (the fast step; ``scene`` is absent when the model has no scene tokens).
    expected_inputs: tuple[str, ...] = INPUT_NAMES
    expected_outputs: tuple[str, ...] = OUTPUT_NAMES

    def __init__(
        self, engine_path: str | Path, device: torch.device | str = "cuda", stream: torch.cuda.Stream | None = None
    ) -> None:
        trt = require_tensorrt()
        self.device = require_trt_device(device)
        self._trt = trt
        # The engine and its context live on the device that is current when they are created (and executed).
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(trt_logger())
            self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self.engine is None:
                raise RuntimeError(
                    f"{engine_path}: TensorRT could not deserialize the engine (see the TensorRT log above); engines "
                    "only load with the TensorRT version and GPU model that built them: rebuild it on this machine"
                )
            self.context = self.engine.create_execution_context()
            self.stream = stream if stream is not None else fast_stream(self.device)
        self.inputs: dict[str, torch.dtype] = {}
        self.input_shapes: dict[str, tuple[int, ...]] = {}  # -1 = dynamic dimension (set per call)
        self._output_dtypes: dict[str, torch.dtype] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = _trt_to_torch_dtype(trt, self.engine.get_tensor_dtype(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = dtype
                self.input_shapes[name] = tuple(self.engine.get_tensor_shape(name))
            else:
                self._output_dtypes[name] = dtype
        # A mismatched engine (e.g. a BEV encoder engine given as the fast step) fails here, not mid-drive.
        unknown = set(self.inputs) - set(self.expected_inputs)
        missing = set(self.expected_outputs) - set(self._output_dtypes)
        if unknown or missing:
            raise ValueError(
                f"{engine_path}: engine I/O {sorted(self.inputs)} -> {sorted(self._output_dtypes)} does not match "
                f"{list(self.expected_inputs)} -> {list(self.expected_outputs)}"
            )
        self._dynamic = any(d < 0 for shape in self.input_shapes.values() for d in shape)
        if not self._dynamic:  # static engine: output buffers are allocated and bound once
            self._bind_outputs()

    def _bind_outputs(self) -> None:
        """(Re)allocate output buffers at the context's current output shapes and bind their addresses."""
        for name, dtype in self._output_dtypes.items():
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"TensorRT output {name!r} has a data-dependent shape {shape}: not supported")
            buf = self.outputs.get(name)
            if buf is None or tuple(buf.shape) != shape:
                buf = self.outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
                if not self.context.set_tensor_address(name, buf.data_ptr()):
                    raise RuntimeError(f"TensorRT rejected the address of output {name!r}")

    def _execute(self, given: dict[str, torch.Tensor | np.ndarray | None]) -> None:
        """Bind the named inputs (converted to the engine's device/dtype) and run the engine to completion."""
        keep = []  # converted inputs must outlive the asynchronous launch
        with torch.cuda.device(self.device):
            for name, dtype in self.inputs.items():
                value = given.get(name)
                if value is None:
                    raise ValueError(f"the TensorRT engine needs input {name!r}, got None")
                t = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                t = t.to(device=self.device, dtype=dtype).contiguous()
                # TensorRT reads raw memory: a wrong shape would be read out of bounds instead of failing.
                expected = self.input_shapes[name]
                if t.dim() != len(expected) or any(e not in (-1, s) for e, s in zip(expected, t.shape)):
                    raise ValueError(f"input {name!r} has shape {tuple(t.shape)}, the engine was built for {expected}")
                if t.data_ptr() % 256:  # setTensorAddress needs 256-byte alignment; a view may be offset
                    t = t.clone()
                if self._dynamic and not self.context.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(f"input {name!r} shape {tuple(t.shape)} is outside the engine's profile")
                keep.append(t)
                if not self.context.set_tensor_address(name, t.data_ptr()):
                    raise RuntimeError(f"TensorRT rejected the address of input {name!r}")
            if self._dynamic:
                self._bind_outputs()  # output shapes follow the input shapes just set
            assert self.stream is not None
            # Inputs were converted/copied on the caller's current stream: order the engine after them.
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            self.stream.synchronize()  # outputs are read (and inputs freed) by the caller right after

    def __call__(self, keys, values, pad_mask, next_position, target_points, speed, scene) -> FastOutputs:
        """``FastEngine.__call__``: keys / values [L, B, Hkv, S, D] ... -> (path, waypoints, logits) arrays."""
        self._execute(dict(zip(INPUT_NAMES, (keys, values, pad_mask, next_position, target_points, speed, scene))))
        return tuple(_to_numpy(self.outputs[name]) for name in OUTPUT_NAMES)  # type: ignore[return-value]

    def close(self) -> None:
        # The context must go before the engine it was created from.
        self.context = None
        self.engine = None


class OnnxSceneEngine:
    """The exported BEV encoder (``rgb``, ``lidar`` -> ``bev_features``) in its own ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int = 1, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.session = ort_session(onnx_path, threads, self.device)
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(SCENE_INPUT_NAMES):
            raise ValueError(f"{onnx_path}: graph inputs {names}, a BEV encoder export has {list(SCENE_INPUT_NAMES)}")
        self.threads = threads

    def __call__(self, rgb: np.ndarray, lidar: np.ndarray) -> torch.Tensor:
        """(1, 3, H, W) and (1, C, H', W') float32 arrays -> the (1, C_out, h, w) BEV feature (CPU tensor)."""
        (feature,) = self.session.run([SCENE_OUTPUT_NAME], {"rgb": rgb, "lidar": lidar})
        return torch.from_numpy(feature)

    def close(self) -> None:
        self.session = None


class TensorRTSceneEngine(TensorRTEngine):
    """The BEV encoder as a serialized TensorRT engine, on the fast path's CUDA stream when one is given."""

    expected_inputs = SCENE_INPUT_NAMES
    expected_outputs = (SCENE_OUTPUT_NAME,)

    def __call__(self, rgb: np.ndarray, lidar: np.ndarray) -> torch.Tensor:  # type: ignore[override]
        """Same contract as OnnxSceneEngine; the feature is returned on the CUDA device (a copy, not the buffer)."""
        self._execute({"rgb": rgb, "lidar": lidar})
        return self.outputs[SCENE_OUTPUT_NAME].clone()


def require_tensorrt():
    """Import tensorrt (>= 10) or raise MissingDependencyError naming the package and how to install it."""
    try:
        import tensorrt  # pyright: ignore[reportMissingImports]  # optional `trt` extra, GPU machines only
    except ImportError as exc:
        raise MissingDependencyError(
            f"the TensorRT backend needs the 'tensorrt' Python package, which is not installed ({exc}). "
            "Install it on a GPU machine with: pip install .[trt]"
        ) from exc
    # The code uses the TensorRT 10 API (named I/O tensors, execute_async_v3, INT64/BF16 I/O); 8.x lacks parts of it.
    version = str(getattr(tensorrt, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 10:
        raise MissingDependencyError(
            f"the TensorRT backend needs the 'tensorrt' Python package >= 10, found {version}. "
            "Upgrade it on the GPU machine with: pip install -U 'tensorrt>=10'"
        )
    return tensorrt


_TRT_LOGGER = None


def trt_logger():
    """One process-wide TensorRT logger: TensorRT keeps a single logger for all builders/runtimes (it warns and
    ignores a different one while another object is alive), and the logger must outlive every object using it."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        trt = require_tensorrt()
        _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGER


def require_trt_device(device: torch.device | str) -> torch.device:
    """The CUDA device TensorRT will run on (with an explicit index), or a RuntimeError before any slow build."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError("engine 'tensorrt' needs a CUDA device (set the model device to cuda)")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def _trt_to_torch_dtype(trt, dtype) -> torch.dtype:
    # TensorRT 10 I/O types with a torch equivalent (bool pad_mask and int64 next_position are native I/O types).
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.bfloat16: torch.bfloat16,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.int8: torch.int8,
        trt.uint8: torch.uint8,
        trt.bool: torch.bool,
    }
    if dtype not in table:
        raise TypeError(f"unsupported TensorRT I/O dtype {dtype}")
    return table[dtype]


def create_engine(
    name: str,
    model: torch.nn.Module,
    capacity: int,
    threads: int,
    workdir: str | Path,
    engine_file: str | Path | None = None,
    compile_backend: str = "inductor",
    trt_precision: str = "fp16",
) -> FastEngine:
    """Build the named engine for ``model`` at a fixed KV ``capacity``.

    ONNX Runtime / TensorRT use ``engine_file`` when given, otherwise the fast step is exported into ``workdir``
    (ONNX export is seconds for the test presets; use ``automot export`` once for big models).
    """
    from automot.runtime.export import build_trt_engine, export_onnx

    device = next(model.parameters()).device
    if name == "torch":
        return TorchEngine(model.fast_step_module(), device)
    if name == "torch-compile":
        return TorchCompileEngine(model.fast_step_module(), device, backend=compile_backend)
    if name == "onnxruntime":
        path = Path(engine_file) if engine_file else export_onnx(model, Path(workdir) / "fast_step.onnx", capacity)
        return OnnxRuntimeEngine(path, threads=threads, device=device)
    if name == "tensorrt":
        require_tensorrt()  # fail before a pointless export / engine build
        require_trt_device(device)
        path = Path(engine_file) if engine_file else None
        if path is None or path.suffix == ".onnx":
            onnx_path = path or export_onnx(model, Path(workdir) / "fast_step.onnx", capacity)
            path = build_trt_engine(onnx_path, Path(workdir) / f"fast_step.{trt_precision}.engine", trt_precision)
        return TensorRTEngine(path, device=device)
    raise ValueError(f"unknown engine {name!r}")


def create_scene_engine(
    name: str,
    encoder: torch.nn.Module,
    threads: int,
    workdir: str | Path,
    device: torch.device | str = "cpu",
    engine_file: str | Path | None = None,
    trt_precision: str = "fp16",
    stream: torch.cuda.Stream | None = None,
) -> OnnxSceneEngine | TensorRTSceneEngine | None:
    """The BEV encoder engine matching the fast engine ``name``, or None for the torch engines (eager encoder).

    Like ``create_engine``: ``engine_file`` (a ``bev_encoder.onnx`` / ``.engine`` from ``automot export``) when
    given, otherwise the encoder (in its current device/dtype) is exported into ``workdir`` now.
    """
    from automot.runtime.export import build_trt_engine, export_bev_onnx

    if name in ("torch", "torch-compile"):
        return None
    if name == "onnxruntime":
        path = Path(engine_file) if engine_file else export_bev_onnx(encoder, Path(workdir) / "bev_encoder.onnx")
        return OnnxSceneEngine(path, threads=threads, device=device)
    if name == "tensorrt":
        require_tensorrt()  # fail before a pointless export / engine build
        require_trt_device(device)
        path = Path(engine_file) if engine_file else None
        if path is None or path.suffix == ".onnx":
            onnx_path = path or export_bev_onnx(encoder, Path(workdir) / "bev_encoder.onnx")
            path = build_trt_engine(onnx_path, Path(workdir) / f"bev_encoder.{trt_precision}.engine", trt_precision)
        return TensorRTSceneEngine(path, device=device, stream=stream)
    raise ValueError(f"unknown engine {name!r}")
