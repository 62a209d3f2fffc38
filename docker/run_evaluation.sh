#!/bin/bash
# Leaderboard 2.0 entry point inside the submission image (docker/Dockerfile.submission): the evaluation servers
# call this with the Dockerfile.master variables set; the CARLA server is theirs (host/port from the environment).
set -euo pipefail
args=(
    "--routes=${ROUTES}"
    "--repetitions=${REPETITIONS}"
    "--track=${CHALLENGE_TRACK_CODENAME}"
    "--checkpoint=${CHECKPOINT_ENDPOINT}"
    "--debug-checkpoint=${DEBUG_CHECKPOINT_ENDPOINT:-${CHECKPOINT_ENDPOINT%.json}_debug.txt}"
    "--agent=${TEAM_AGENT}"
    "--agent-config=${TEAM_CONFIG}"
    "--debug=${DEBUG_CHALLENGE}"
    "--host=${CARLA_HOST:-localhost}"
    "--port=${CARLA_PORT:-2000}"
    "--traffic-manager-port=${CARLA_TM_PORT:-8000}"
)
if [[ -n "${ROUTES_SUBSET:-}" ]]; then
    args+=("--routes-subset=${ROUTES_SUBSET}")
fi
if [[ -n "${RECORD_PATH:-}" ]]; then
    args+=("--record=${RECORD_PATH}")
fi
if [[ -n "${RESUME:-}" ]]; then
    args+=("--resume=1")  # the evaluator's --resume is type=bool: any non-empty value means True
fi
exec python3 "${LEADERBOARD_ROOT}/leaderboard/leaderboard_evaluator.py" "${args[@]}"
