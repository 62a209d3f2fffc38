"""What an evaluation folder evaluated: the agent configuration, the checkpoint files and the code version.

An evaluation folder is **one** configuration. ``automot eval`` stores :func:`identity` in ``DIR/eval.json`` and the
two hashes (``config_sha256``, ``checkpoint_sha256``) in every route's ``record.json``; re-running or resuming into
the folder with another configuration or other checkpoint bytes is refused by :func:`check_same_identity` with one
line naming the differing keys (a folder whose records were made with ``model.refiner: false`` must never be
reported as ``refiner: true``). The report's header (:func:`header_lines`) names the config (linking the saved
YAML), the checkpoint and its hash, ``git describe`` and the command.

The config hash is over the loaded config (defaults filled in, so comments and key order do not count) without the
checkpoint's *path*: the checkpoint is identified by the bytes of its files, so the same weights at another path are
the same evaluation and other weights at the same path are not.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automot.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
_PATH_KEYS = ("model.checkpoint",)  # compared by content (checkpoint_sha256), not by path
_HASH_CHUNK = 1 << 20

__all__ = ["check_same_identity", "header_lines", "identity", "record_hashes"]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}." if prefix or k else ""))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_files(path: str | None) -> dict[str, str]:
    """sha256 of each file of a checkpoint (a file, or every file under a folder, by relative path)."""
    if not path:
        return {}
    p = Path(path)
    if p.is_file():
        return {p.name: _sha256_file(p)}
    if p.is_dir():
        return {f.relative_to(p).as_posix(): _sha256_file(f) for f in sorted(p.rglob("*")) if f.is_file()}
    return {}


def _combined(files: Mapping[str, str]) -> str | None:
    if not files:
        return None
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def git_describe(root: Path = REPO_ROOT) -> str | None:
    """``git describe --always --dirty --tags`` of the project (None outside a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def identity(agent_config: str, checkpoint: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """The identity of an evaluation run with the agent config file ``agent_config`` (the merged one after
    ``--set``) and ``checkpoint`` (a ``--checkpoint`` replacing the config's model.checkpoint).

    A config the project's agent cannot load (another agent's own config format) is identified by its bytes."""
    config: dict[str, Any] = {}
    ckpt = checkpoint
    path = Path(agent_config) if agent_config else None
    try:
        from automot.agent.config import config_to_dict, load_agent_config

        loaded = load_agent_config(agent_config)
        config = _flatten(config_to_dict(loaded))
        ckpt = ckpt or loaded.model.checkpoint
    except Exception:  # noqa: BLE001 - not our agent's config: its bytes are its identity
        if path is not None and path.is_file():
            config = {"file_sha256": _sha256_file(path)}
    if checkpoint:
        config["model.checkpoint"] = checkpoint
    compared = {k: v for k, v in config.items() if k not in _PATH_KEYS}
    files = checkpoint_files(ckpt)
    return {
        "config_path": str(path.resolve()) if path is not None and path.exists() else agent_config,
        "config": compared,
        "config_sha256": hashlib.sha256(json.dumps(compared, sort_keys=True, default=str).encode()).hexdigest(),
        "checkpoint": str(Path(ckpt).resolve()) if ckpt and Path(ckpt).exists() else ckpt,
        "checkpoint_files": files,
        "checkpoint_sha256": _combined(files),
        "git_describe": git_describe(),
        "argv": list(argv) if argv is not None else None,
    }


def record_hashes(ident: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the identity every route record carries."""
    return {"config_sha256": ident.get("config_sha256"), "checkpoint_sha256": ident.get("checkpoint_sha256")}


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``key (old -> new)`` for every config key and the checkpoint bytes that differ."""
    diffs = []
    a, b = before.get("config") or {}, now.get("config") or {}
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            diffs.append(f"{key} ({_show(a.get(key, '<unset>'))} -> {_show(b.get(key, '<unset>'))})")
    if not diffs and before.get("config_sha256") != now.get("config_sha256"):
        diffs.append("agent config (hash differs)")
    if before.get("checkpoint_sha256") != now.get("checkpoint_sha256"):
        fa, fb = before.get("checkpoint_files") or {}, now.get("checkpoint_files") or {}
        changed = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
        sha = (before.get("checkpoint_sha256") or "none")[:12], (now.get("checkpoint_sha256") or "none")[:12]
        diffs.append(f"checkpoint {', '.join(changed[:3]) or ''} (sha256 {sha[0]} -> {sha[1]})".replace("  ", " "))
    return diffs


def check_same_identity(out: Path, before: Mapping[str, Any] | None, now: Mapping[str, Any], records: list) -> None:
    """Refuse (UsageError, exit 2) a run into ``out`` whose configuration or checkpoint differs from the one its
    routes were made with: ``before`` is ``eval.json``'s identity (None for folders from older versions, which are
    then checked against the hashes in the route records ``records``)."""
    diffs = differences(before, now) if before else []
    if not before:
        for rec in records:
            got = {k: rec.get(k) for k in ("config_sha256", "checkpoint_sha256") if rec.get(k)}
            if any(got[k] != now.get(k) for k in got):
                diffs = [k.replace("_sha256", "") + " hash" for k in got if got[k] != now.get(k)]
                break
    if diffs:
        raise UsageError(
            f"--out {out}: its routes were evaluated with another configuration; differs: {'; '.join(diffs)}; "
            "use another --out (an evaluation folder holds one configuration)"
        )


def header_lines(out: Path) -> list[tuple[str, str, str | None]]:
    """(label, text, link) lines for the report header from ``DIR/eval.json`` (empty without one)."""
    try:
        data = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ident = data.get("identity") or {}
    lines: list[tuple[str, str, str | None]] = []
    saved = out / "agent_config.yaml"
    if saved.is_file():
        lines.append(("Config", f"agent_config.yaml (sha256 {str(ident.get('config_sha256'))[:12]})", saved.name))
    elif ident.get("config_path"):
        p = Path(ident["config_path"])
        lines.append(
            ("Config", f"{p} (sha256 {str(ident.get('config_sha256'))[:12]})", p.as_uri() if p.is_absolute() else None)
        )
    if ident:
        ck = ident.get("checkpoint") or "none (random initialisation)"
        lines.append(("Checkpoint", f"{ck} (sha256 {str(ident.get('checkpoint_sha256'))[:12]})", None))
        lines.append(("Code version", ident.get("git_describe") or "unknown (not a git checkout)", None))
    argv = data.get("argv") or ident.get("argv")
    if argv:
        lines.append(("Command", "automot " + " ".join(str(a) for a in argv), None))
    return lines


def save_config_copy(out: Path, agent_config: str) -> Path | None:
    """``DIR/agent_config.yaml``: the config as loaded (checkpoint path made absolute), for the report's link;
    None when the project's agent cannot load it (the file is then linked where it is)."""
    try:
        from automot.agent.config import load_agent_config, save_agent_config

        cfg = load_agent_config(agent_config)
    except Exception:  # noqa: BLE001 - another agent's config
        return None
    if cfg.model.checkpoint and Path(cfg.model.checkpoint).exists():
        cfg.model.checkpoint = str(Path(cfg.model.checkpoint).resolve())
    return Path(save_agent_config(cfg, Path(out) / "agent_config.yaml"))
