"""Released weight files: which files, what they hold (header only), strict matching, and streaming writes.

Rules (docs/released-checkpoint.md §1.2): ``model.safetensors``, else sorted ``model-*.safetensors`` shards;
``ema.safetensors`` only when asked. Keys are used verbatim. Unlike the released loader (which only printed
problems), every missing, unexpected or mis-shaped tensor is a hard error that names it. Two kinds of tensors are
optional: the tied LM head (absent -> tied to ``embed_tokens``) and BatchNorm ``num_batches_tracked`` counters
(unused in eval mode; whether the release stores them is unverified).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from automot.fsio import atomic_path
from automot.model.understanding import PretrainedLoadError

TIED_HEAD = "language_model.lm_head.weight"
EMBED = "language_model.model.embed_tokens.weight"

_ST_DTYPES = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype string, e.g. "BF16"


def is_optional(name: str) -> bool:
    """Tensors that may be absent from a released file without being an error."""
    return name == TIED_HEAD or name.endswith(".num_batches_tracked")


def is_float_dtype(st_dtype: str) -> bool:
    """Whether a safetensors dtype string ("BF16", "F32", "I64", ...) is floating point."""
    return st_dtype.startswith(("F", "BF"))


def _is_counter(name: str) -> bool:
    return name.endswith(".num_batches_tracked")


def is_ignored(name: str) -> bool:
    """Tensors skipped when present: rotary ``inv_freq`` is recomputed in fp32, as the released loader does."""
    return name.endswith(".inv_freq") or name == "inv_freq"


def _open(path: Path):
    """``safe_open`` with a load error naming the file when it is not a readable safetensors file."""
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises its own error type for bad headers / truncated files
        raise PretrainedLoadError(
            f"{path}: not a valid safetensors file ({type(exc).__name__}: {exc}); re-download it"
        ) from exc


def resolve_weight_files(folder: str | Path, ema: bool = False) -> list[Path]:
    """The weight files the released loader would read, in load order."""
    folder = Path(folder)
    if ema:
        path = folder / "ema.safetensors"
        if not path.is_file():
            raise PretrainedLoadError(
                f"{path}: not found (asked for EMA weights; the released loader would silently fall back to "
                "model.safetensors - drop --ema to use those)"
            )
        return [path]
    single = folder / "model.safetensors"
    shards = sorted(folder.glob("model-*.safetensors"))
    if single.is_file() and shards:
        raise PretrainedLoadError(
            f"{folder}: both model.safetensors and {len(shards)} model-*.safetensors shards; keep one of the two "
            "(which one the release means is ambiguous)"
        )
    if single.is_file():
        return [single]
    if not shards:
        raise PretrainedLoadError(f"{folder}: no model.safetensors and no model-*.safetensors shards")
    return shards


def read_index(files: Iterable[Path]) -> dict[str, TensorInfo]:
    """name -> (file, shape, dtype) from the safetensors headers (no tensor data is read)."""
    index: dict[str, TensorInfo] = {}
    for path in files:
        with _open(Path(path)) as f:
            for name in f.keys():
                if is_ignored(name):
                    continue
                sl = f.get_slice(name)
                if name in index:
                    raise PretrainedLoadError(
                        f"tensor {name!r} appears in both {index[name].file.name} and {path.name}"
                    )
                index[name] = TensorInfo(Path(path), tuple(sl.get_shape()), sl.get_dtype())
    return index


def match_manifest(index: dict[str, TensorInfo], expected: dict[str, tuple[int, ...]], where: str) -> None:
    """Raise one error naming every missing, unexpected and mis-shaped tensor (released names)."""
    missing = [n for n in expected if n not in index and not is_optional(n)]
    unexpected = [n for n in index if n not in expected]
    mismatched = [
        f"{n}: expected {list(expected[n])}, got {list(index[n].shape)}"
        for n in index
        if n in expected and tuple(expected[n]) != index[n].shape
    ]
    # Every tensor of the layout is floating point except BatchNorm counters; anything else would be cast silently.
    wrong_kind = [
        f"{n}: stored as {index[n].dtype}, expected {'an integer' if _is_counter(n) else 'a float (BF16/F16/F32)'}"
        for n in index
        if n in expected and is_float_dtype(index[n].dtype) == _is_counter(n)
    ]
    problems = []
    for title, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", mismatched),
        ("dtype mismatch", wrong_kind),
    ):
        if items:
            shown = "\n    ".join(items[:20]) + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else "")
            problems.append(f"{title} ({len(items)}):\n    {shown}")
    if problems:
        raise PretrainedLoadError(
            f"{where}: tensors do not match the expected released layout\n  " + "\n  ".join(problems)
        )


def iter_tensors(index: dict[str, TensorInfo], names: Iterable[str]) -> Iterable[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one at a time, opening each file once (keeps peak memory at one tensor)."""
    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(index[name].file, []).append(name)
    for path, file_names in by_file.items():
        with _open(path) as f:
            for name in file_names:
                try:
                    tensor = f.get_tensor(name)
                except Exception as exc:  # a file truncated after its header fails only here
                    raise PretrainedLoadError(f"{path}: cannot read tensor {name!r} ({exc}); re-download it") from exc
                yield name, tensor


def write_safetensors_streaming(
    path: str | Path,
    entries: list[tuple[str, tuple[int, ...], torch.dtype]],
    produce: Callable[[str], torch.Tensor],
    metadata: dict[str, str] | None = None,
    atomic: bool = True,
) -> None:
    """Write a safetensors file tensor by tensor (``produce(name)`` is called once per entry, in order).

    The header (names, dtypes, shapes, offsets) is known up front, so a multi-GB checkpoint is converted without
    holding it in memory. Format: u64 little-endian header length, JSON header padded to 8 bytes, raw data.
    The file is written to a temporary name next to ``path`` and renamed when complete (automot.fsio);
    ``atomic=False`` writes ``path`` itself (for a caller that already hands out a temporary path).
    """
    if atomic:
        with atomic_path(path) as tmp:
            write_safetensors_streaming(tmp, entries, produce, metadata, atomic=False)
        return
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, shape, dtype in entries:
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for name, shape, dtype in entries:
            t = produce(name)
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise ValueError(f"{name}: produced {tuple(t.shape)} {t.dtype}, header says {tuple(shape)} {dtype}")
            fh.write(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
