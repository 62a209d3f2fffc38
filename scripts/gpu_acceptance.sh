#!/usr/bin/env bash
# One-command GPU acceptance run (issue #14): automot-4b with random bf16 weights, per-engine latency, TensorRT
# parity, concurrency, peak memory, and the released BEV encoder; one JSON out (default acceptance.json).
# Usage: scripts/gpu_acceptance.sh [--device cuda] [--json-out acceptance.json] [...]  (see scripts/gpu_acceptance.py)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python "$here/gpu_acceptance.py" "$@"
