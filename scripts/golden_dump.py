"""Golden dumps of the ORIGINAL AutoMoT code, and their comparison with ours (recipe: scripts/GOLDEN.md).

    # GPU box, original repo + its environment (torch 2.7.1, transformers 4.57.3, carla client importable):
    python scripts/golden_dump.py dump --automot-repo ~/AutoMoT --checkpoint ~/AutoMoT/Automot/checkpoints \
        --out golden/ [--frames frames.npz] [--kv-layers 0 17 35]
    # Anywhere with this repo installed:
    python scripts/golden_dump.py compare --golden golden/ --checkpoint ~/AutoMoT/Automot/checkpoints [--device cuda]

The dump side drives the original modules through their public entry points (load_model_mot, InterleaveInferencer,
BEVEncoderBackboneExtractor) and wraps two methods to capture intermediate tensors; it was written from
docs/released-checkpoint.md and the public source and has not been run here (no GPU, no original environment).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# ------------------------------------------------------------------------------------------------ compare (ours)
def compare(args: argparse.Namespace) -> int:
    import torch

    from automot.model.released.golden import compare_frame, load_frame
    from automot.model.released.loader import load_converted, load_released
    from automot.model.released.numerics import apply_released_numerics

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    if args.converted:
        model = load_converted(args.checkpoint, device=args.device, dtype=dtype)
    else:
        model = load_released(args.checkpoint, device=args.device, dtype=dtype, preset=args.preset, ema=args.ema)
    if dtype == torch.bfloat16:
        apply_released_numerics(model)
        model.released.bev_encoder.to(torch.bfloat16)
    frames = sorted(Path(args.golden).glob("*.npz"))
    if not frames:
        print(f"no golden frames (*.npz) in {args.golden}", file=sys.stderr)
        return 2
    failed = 0
    for path in frames:
        checks = compare_frame(model, load_frame(path), rtol=args.rtol, metres=args.metres)
        print(f"== {path.name}")
        for c in checks:
            print(f"  {c}")
        failed += sum(not c.ok for c in checks)
    print(f"{len(frames)} frame(s), {failed} failed check(s)")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------ dump (original)
def _synthetic_frames(n: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic inputs when no recorded frames are given (numerics parity does not need a real scene)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (n, 1, 512, 1024, 3), dtype=np.uint8)
    history = np.clip(base.astype(np.int16) + rng.integers(-20, 20, (n, 4, 512, 1024, 3)), 0, 255).astype(np.uint8)
    return dict(
        history_rgb=history,
        camera_bgr=history[:, -1, :, :, ::-1].copy(),
        lidar_ego=np.concatenate([rng.uniform(-40, 40, (n, 20000, 2)), rng.uniform(-2.5, 3.0, (n, 20000, 1))], -1),
        target_points=rng.uniform(-20, 40, (n, 2, 2)).astype(np.float32),
        speed=rng.uniform(0, 12, n).astype(np.float32),
    )


def dump(args: argparse.Namespace) -> int:  # pragma: no cover - needs the original repo and a CUDA GPU
    import cv2
    import torch
    from PIL import Image

    from automot.model.released.golden import save_frame

    repo = Path(args.automot_repo).resolve()
    for p in (repo / "leaderboard", repo / "Automot", repo / "Automot" / "mot", repo):
        sys.path.insert(0, str(p))
    os.environ.setdefault("AUTOMOT_MODEL_PATH", str(args.checkpoint))
    os.environ.setdefault("QWEN3VL_PATH", str(args.checkpoint))
    from data.automot.data_utils import add_special_tokens, prepare_attention_mask_per_sample  # pyright: ignore[reportMissingImports]
    from evaluation.inference import USER_PROMPT, InterleaveInferencer  # pyright: ignore[reportMissingImports]
    from mot.modeling.bev_encoder import bev_encoder_utils as bev_utils  # pyright: ignore[reportMissingImports]
    from mot.modeling.bev_encoder.backbone_extractor import BEVEncoderBackboneExtractor  # pyright: ignore[reportMissingImports]
    from safetensors import safe_open
    from team_code.automot_utils import build_cleaned_prompt_and_modes, load_model_mot  # pyright: ignore[reportMissingImports]
    from team_code.bev_data_utils import lidar_to_histogram_features  # pyright: ignore[reportMissingImports]
    from transformers import AutoTokenizer

    model = load_model_mot("cuda")
    tokenizer, new_token_ids, _ = add_special_tokens(AutoTokenizer.from_pretrained(str(args.checkpoint)))
    model.language_model.tokenizer = tokenizer
    inferencer = InterleaveInferencer(model=model, tokenizer=tokenizer, vit_transform=None, new_token_ids=new_token_ids)
    with safe_open(str(Path(args.checkpoint) / "model.safetensors"), framework="pt", device="cpu") as f:
        bev_sd = {k[len("bev_encoder.") :]: f.get_tensor(k) for k in f.keys() if k.startswith("bev_encoder.")}
    bev = BEVEncoderBackboneExtractor(config_path=str(args.checkpoint), device="cuda:0", state_dict=bev_sd).eval()
    bev = bev.to(torch.bfloat16)

    captured: dict[str, object] = {}

    def wrap(obj, name):
        original = getattr(obj, name)

        def hooked(*a, **kw):
            out = original(*a, **kw)
            captured[name] = (a, kw, out)
            return out

        setattr(obj, name, hooked)

    wrap(model, "prepare_kv_cache")
    wrap(model, "prepare_fast_kvcache")
    wrap(model.language_model, "forward_inference")

    frames = dict(np.load(args.frames)) if args.frames else _synthetic_frames(args.num_frames, args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(len(frames["speed"])):
        tp, speed = frames["target_points"][i], float(frames["speed"][i])
        images = [Image.fromarray(h).resize((512, 256), Image.Resampling.LANCZOS) for h in frames["history_rgb"][i]]
        # BEV encoder inputs exactly as the agent builds them (mot_b2d_agent.tick).
        ok, buf = cv2.imencode(".jpg", frames["camera_bgr"][i])
        rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        rgb = np.transpose(bev_utils.crop_array(bev.config, rgb), (2, 0, 1)).astype(np.float32)
        hist = lidar_to_histogram_features(frames["lidar_ego"][i], bev.config)
        with torch.no_grad():
            feat = bev(torch.from_numpy(rgb)[None].cuda().bfloat16(), torch.from_numpy(hist)[None].cuda().bfloat16())
        feat = feat["bev_feature"]
        prompt, _, _ = build_cleaned_prompt_and_modes([speed, tp[0, 0], tp[0, 1], tp[1, 0], tp[1, 1]])
        v_tp = torch.tensor([[speed, tp[0, 0], tp[0, 1], tp[1, 0], tp[1, 1]]], dtype=torch.float32).cuda()
        if hasattr(inferencer, "_cached_gen_context"):
            del inferencer._cached_gen_context  # fresh prefill for every golden frame
        result = inferencer(image=images, text=prompt, v_target_point=v_tp, bev_encoder_feature=feat, frame_idx=0)
        gen_in = captured["prepare_kv_cache"][2][0]
        ids = gen_in["packed_text_ids"].cpu().numpy()
        n_user = len(tokenizer.encode(USER_PROMPT, add_special_tokens=False))
        n_img = [int(g.prod()) // 4 + 2 for g in gen_in["packed_vit_position_ids"]]
        splits = [n_user, *n_img, len(ids) - n_user - sum(n_img)]
        mask = prepare_attention_mask_per_sample(splits, ["causal"] + ["full"] * len(n_img) + ["causal"])
        cache = inferencer._cached_gen_context["past_key_values"]
        fast_in = captured["prepare_fast_kvcache"][2][0]
        order = torch.cat(
            [
                fast_in[k]
                for k in (
                    "packed_bev_token_indexes",
                    "target_point_indexes",
                    "v_indexes",
                    "packed_reasoning_token_indexes",
                )
            ]
            + [fast_in["packed_action_token_indexes"]]
        )
        fi_args, fi_kw, fi_out = captured["forward_inference"]
        seq = fi_kw["packed_query_sequence"]
        hidden = fi_out[0] if isinstance(fi_out, (tuple, list)) else fi_out
        hidden = hidden.reshape(-1, hidden.shape[-1])[-seq.shape[0] :]
        reasoning = fast_in["packed_reasoning_token_indexes"]
        decision = model.language_model.lm_head(hidden[reasoning]).argmax(-1)
        # An odd frame index reuses the cached prefix: the released reuse tick (shifted action positions).
        reuse = inferencer(image=images, text=prompt, v_target_point=v_tp, bev_encoder_feature=feat, frame_idx=1)
        save_frame(
            out_dir / f"frame_{i:03d}.npz",
            images=np.stack([np.asarray(im) for im in images]),
            pixel_values=gen_in["packed_vit_tokens"].float().cpu().numpy(),
            image_grid_thw=gen_in["packed_vit_position_ids"].cpu().numpy(),
            input_ids=ids,
            position_ids=gen_in["packed_position_ids"].reshape(3, -1).cpu().numpy(),
            prefill_mask=(mask == 0).cpu().numpy(),
            kv_layers=np.asarray(args.kv_layers, dtype=np.int64),
            keys=np.stack([cache.key_cache[j].float().cpu().numpy() for j in args.kv_layers]),
            values=np.stack([cache.value_cache[j].float().cpu().numpy() for j in args.kv_layers]),
            target_points=tp.astype(np.float32),
            speed=np.float32(speed),
            bev_image=rgb,
            bev_lidar=hist,
            bev_feature=feat[0].float().cpu().numpy(),
            gen_inputs=seq[order].float().cpu().numpy(),
            gen_hidden=hidden[order].float().cpu().numpy(),
            route=result["route"][0].float().cpu().numpy(),
            waypoints=result["traj"][0].float().cpu().numpy(),
            decision_ids=decision.cpu().numpy(),
            reuse_route=reuse["route"][0].float().cpu().numpy(),
            reuse_waypoints=reuse["traj"][0].float().cpu().numpy(),
        )
        print(f"frame {i}: {result['text']!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="run the original code and write golden frames (GPU box)")
    d.add_argument("--automot-repo", required=True)
    d.add_argument("--checkpoint", required=True, help="released folder (Automot/checkpoints)")
    d.add_argument("--out", required=True)
    d.add_argument("--frames", help="npz with history_rgb, camera_bgr, lidar_ego, target_points, speed")
    d.add_argument("--num-frames", type=int, default=3)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--kv-layers", type=int, nargs="+", default=[0, 17, 35])
    d.set_defaults(func=dump)
    c = sub.add_parser("compare", help="compare our model with golden frames")
    c.add_argument("--golden", required=True)
    c.add_argument("--checkpoint", required=True, help="released folder (or a convert output with --converted)")
    c.add_argument("--converted", action="store_true")
    c.add_argument("--preset", default="automot-4b")
    c.add_argument("--ema", action="store_true")
    c.add_argument("--device", default="cpu")
    c.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    c.add_argument("--rtol", type=float, default=2e-2)
    c.add_argument("--metres", type=float, default=1e-2)
    c.set_defaults(func=compare)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
