"""Flow-matching action refiner: shapes, identity at init, gradients (refiner only / end to end), save/load."""

from __future__ import annotations

import pytest
import torch

from automot.errors import ConfigError
from automot.model import build_model, make_dummy_inputs
from automot.model.refiner import ActionRefiner, RefinerConfig, apply_refiner, has_refiner, load_refiner, save_refiner
from automot.training.config import LossSection, StageSection
from automot.training.data.torch_dataset import TrainBatch
from automot.training.objective import TrainingObjective
from automot.training.stages import configure_trainable


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model's ops are too small to gain from a second thread, and on a busy 2-core machine intra-op
    barriers make each tiny op wait for a descheduled thread (measured: 0.8 s vs 65 s for the same test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def model():
    return build_model("tiny", seed=0)


def _batch(model, b: int = 2) -> TrainBatch:
    obs, state = make_dummy_inputs(model.config, batch=b, seed=1)
    g = torch.Generator().manual_seed(2)
    path = torch.cumsum(torch.rand(b, 20, 2, generator=g), dim=1)
    wps = torch.cumsum(torch.rand(b, 6, 2, generator=g) * 3, dim=1)
    ids = torch.randint(7, model.config.vocab_size, (b, model.config.tokens.num_decision_tokens), generator=g)
    return TrainBatch(obs, state, path, wps, ids, ["keep, keep, keep"] * b)


def _refiner(model) -> ActionRefiner:
    return ActionRefiner(RefinerConfig(cond_dim=model.config.action.hidden_size, d_model=32, num_heads=4, steps=3))


def test_shapes_and_identity_at_init(model):
    refiner = _refiner(model)
    obs, state = make_dummy_inputs(model.config, batch=3)
    out = model(obs, state)
    refined = apply_refiner(out, refiner)
    assert refined.path.shape == (3, 20, 2) and refined.waypoints.shape == (3, 6, 2)
    assert refined.decision_text == out.decision_text and refined.hidden is out.hidden
    # Zero-initialised output layer: an untrained refiner leaves the trajectory exactly as it was.
    torch.testing.assert_close(refined.path, out.path)
    torch.testing.assert_close(refined.waypoints, out.waypoints)
    v = refiner.velocity(torch.randn(3, 26, 2), torch.randn(3, 26, 2), torch.rand(3), out.hidden)
    assert v.shape == (3, 26, 2)
    with pytest.raises(ValueError, match="hidden is None"):
        apply_refiner(type(out)(out.path, out.waypoints, out.decision_logits, out.decision_text, None), refiner)


def _grads(module) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}


def test_refiner_stage_trains_only_the_refiner(model):
    refiner = _refiner(model)
    configure_trainable(model, refiner, StageSection(name="refiner"))
    loss, parts = TrainingObjective(model, refiner, LossSection(), "refiner")(_batch(model))
    assert set(parts) == {"refiner_flow", "refiner_l1"}
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    grads = _grads(refiner)
    # Zero-initialised output layer: at the very first step only it receives a gradient ...
    assert grads["out.weight"] and not grads["cond_proj.weight"]
    with torch.no_grad():
        refiner.out.weight.normal_(0, 0.1)
    refiner.zero_grad()
    TrainingObjective(model, refiner, LossSection(), "refiner")(_batch(model))[0].backward()
    grads = _grads(refiner)  # ... after which the whole denoiser does, conditioning path included.
    assert grads["cond_proj.weight"] and grads["blocks.0.cross_attn.in_proj_weight"] and grads["slot.weight"]


def test_end_to_end_gradients_reach_the_action_expert(model):
    refiner = _refiner(model)
    with torch.no_grad():  # a non-identity refiner, so its output depends on the AE states it attends to
        refiner.out.weight.normal_(0, 0.1)
    configure_trainable(model, refiner, StageSection(name="refiner", end_to_end=True))
    objective = TrainingObjective(model, refiner, LossSection(path=0, waypoints=0, decision=0), "refiner", True)
    loss, _ = objective(_batch(model))
    loss.backward()  # only refiner losses are weighted: AE gradients must come through the refiner
    ae = _grads(model)
    assert ae["action_layers.0.self_attn.q_proj.weight"] and ae["action_io.route_head.mlp.0.weight"]
    assert not any(ae[n] for n in ae if n.startswith("understanding."))  # UE frozen in this stage
    assert _grads(refiner)["point_in.weight"]


def test_refiner_learns_a_fixed_offset(model):
    """A few steps of flow matching move the refined trajectory toward the targets."""
    torch.manual_seed(0)
    refiner = _refiner(model)
    batch = _batch(model)
    with torch.no_grad():
        out = model(batch.observation, batch.state)
    opt = torch.optim.Adam(refiner.parameters(), lr=3e-3)

    def err() -> float:
        with torch.no_grad():
            path, wps = refiner.sample(out.path, out.waypoints, out.hidden)
        return float((path - batch.path).abs().mean() + (wps - batch.waypoints).abs().mean())

    before = err()
    for _ in range(30):
        parts = refiner.losses(out.path, out.waypoints, out.hidden, batch.path, batch.waypoints)
        opt.zero_grad()
        (parts["flow"] + parts["refined_l1"]).backward()
        opt.step()
    assert err() < 0.7 * before


def test_save_and_load(tmp_path, model):
    refiner = _refiner(model)
    with torch.no_grad():
        refiner.out.weight.normal_()
    save_refiner(refiner, tmp_path)
    assert has_refiner(tmp_path)
    loaded = load_refiner(tmp_path)
    assert loaded.config == refiner.config
    for (n, a), (_, b) in zip(refiner.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)
    (tmp_path / "refiner.yaml").write_text("cond_dim: 40\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"refiner\.yaml: bogus: unknown field"):
        load_refiner(tmp_path)
