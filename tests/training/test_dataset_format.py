"""Dataset format round trip, decision targets, the torch dataset / collate and the synthetic generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from automot.training.data.automot_format import DatasetWriter, read_dataset, read_meta
from automot.training.data.schema import CameraInfo, DatasetError, DatasetMeta, QAPair, SampleRecord
from automot.training.data.torch_dataset import IGNORE_INDEX, Collator, DrivingDataset, decision_targets, target_text


def _meta(fmt: str = "png") -> DatasetMeta:
    cams = {"CAM_FRONT": CameraInfo(48, 24, 100.0, CameraInfo.pinhole(48, 24, 100.0), {"x": -1.5, "z": 2.0})}
    return DatasetMeta("test-rig", cams, 20.0, fmt, source="unit test")


def _record(rng: np.random.Generator, frame: int, history: list[int]) -> SampleRecord:
    return SampleRecord(
        frame=frame,
        history=history,
        speed=float(rng.uniform(0, 15)),
        target_points=rng.normal(size=(2, 2)) * 20,
        path=np.cumsum(rng.uniform(0.5, 1.0, size=(20, 2)), axis=0),
        waypoints=np.cumsum(rng.uniform(0.0, 3.0, size=(6, 2)), axis=0),
        decisions=["keep", "change lane left", "stop"],
        qa=[QAPair("Is the lane ahead clear?", "Yes, the lane ahead is clear.")],
    )


def test_writer_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "ds", _meta())
    images = {f: rng.integers(0, 256, size=(24, 48, 3), dtype=np.uint8) for f in (0, 5, 10, 15)}
    records = [_record(rng, 10, [0, 5]), _record(rng, 15, [5, 10])]
    with writer.episode("ep_a") as ep:
        for f, im in images.items():
            ep.add_frame(f, {"CAM_FRONT": im})
        for r in records:
            ep.add_sample(r)
    (episode,) = read_dataset(tmp_path / "ds")
    assert episode.name == "ep_a" and len(episode.records) == 2
    for got, want in zip(episode.records, records):
        assert got.frame == want.frame and got.history == want.history and got.decisions == want.decisions
        assert got.speed == pytest.approx(want.speed, abs=1e-6)
        for name in ("target_points", "path", "waypoints"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), atol=1e-6)
        assert got.qa == want.qa
    for f, im in images.items():  # png is lossless: pixels come back exactly
        np.testing.assert_array_equal(episode.load_image(f), im)
    meta = read_meta(tmp_path / "ds")
    assert meta.cameras["CAM_FRONT"].intrinsics[0][0] == pytest.approx(24 / np.tan(np.radians(50)))
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["format"] == "automot-driving"


def test_writer_rejects_bad_samples(tmp_path):
    rng = np.random.default_rng(1)
    writer = DatasetWriter(tmp_path / "ds", _meta())
    with writer.episode("ep") as ep:
        ep.add_frame(0, {"CAM_FRONT": np.zeros((24, 48, 3), np.uint8)})
        with pytest.raises(DatasetError, match="frames \\[5\\] were not written"):
            ep.add_sample(_record(rng, 5, [0]))
        bad = _record(rng, 0, [])
        bad.decisions = ["keep", "fly", "stop"]
        with pytest.raises(DatasetError, match="unknown decision.*fly"):
            ep.add_sample(bad)
        with pytest.raises(DatasetError, match="expected uint8 \\(24, 48, 3\\)"):
            ep.add_frame(1, {"CAM_FRONT": np.zeros((10, 10, 3), np.uint8)})
    with pytest.raises(DatasetError, match="different meta.json"):
        DatasetWriter(tmp_path / "ds", DatasetMeta("other-rig", _meta().cameras, 20.0, "png"))


def test_reader_names_the_bad_line(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", _meta())
    with writer.episode("ep") as ep:
        ep.add_frame(0, {"CAM_FRONT": np.zeros((24, 48, 3), np.uint8)})
    (tmp_path / "ds" / "ep" / "samples.jsonl").write_text('{"frame": 0}\n')
    with pytest.raises(DatasetError, match="samples.jsonl:1: missing field"):
        read_dataset(tmp_path / "ds")


def test_decision_targets_padding_and_truncation(tiny_model):
    tok = tiny_model.tokenizer
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    short = decision_targets(tok, "stop", 8)
    content = tok.encode("stop", add_special_tokens=False)
    assert short.tolist() == [start, *content, end] + [IGNORE_INDEX] * (8 - 2 - len(content))
    long_text = "change lane left, change lane right, change lane left"
    long = decision_targets(tok, long_text, 8)
    assert long[0] == start and long[-1] == end and IGNORE_INDEX not in long.tolist()
    assert long[1:-1].tolist() == tok.encode(long_text, add_special_tokens=False)[:6]
    # A perfect prediction of the targets decodes to exactly target_text with the raw per-position argmax decoding
    # (constrain_decisions off: any text, as the released profile decodes); the default constrained decoding only
    # ever returns meta-action sentences (tests/model/test_decision_vocabulary.py).
    constrained = tiny_model.constrain_decisions
    tiny_model.constrain_decisions = False
    try:
        for ids in (short, long):
            logits = torch.full((1, 8, tiny_model.config.vocab_size), -10.0)
            for i, t in enumerate(ids.tolist()):
                logits[0, i, t if t != IGNORE_INDEX else 0] = 10.0
            assert tiny_model.decode_decision(logits) == [target_text(tok, ids)]
    finally:
        tiny_model.constrain_decisions = constrained
    assert target_text(tok, short) == "stop"


def test_dataset_and_collate(tmp_path, tiny_model):
    rng = np.random.default_rng(2)
    writer = DatasetWriter(tmp_path / "ds", _meta())
    with writer.episode("ep") as ep:
        for f in (0, 5, 10):
            ep.add_frame(f, {"CAM_FRONT": rng.integers(0, 256, size=(24, 48, 3), dtype=np.uint8)})
        ep.add_sample(_record(rng, 0, []))
        ep.add_sample(_record(rng, 10, [0, 5]))
    builder = tiny_model.prompt_builder()
    ds = DrivingDataset(read_dataset(tmp_path / "ds"), builder, with_vqa=True)
    assert ds.frames_for(0, 0) == [0, 0]  # the tiny preset wants 2 frames: the only one is repeated
    assert ds.frames_for(0, 1) == [5, 10]
    batch = Collator(tiny_model.tokenizer.pad_token_id)([ds[0], ds[1]])
    assert batch.path.shape == (2, 20, 2) and batch.waypoints.shape == (2, 6, 2)
    assert batch.decision_ids.shape == (2, tiny_model.config.tokens.num_decision_tokens)
    assert batch.state.target_points.shape == (2, 2, 2) and batch.state.speed.shape == (2, 1)
    assert batch.observation.input_ids.shape[0] == 2
    np.testing.assert_allclose(batch.path[1].numpy(), ds.episodes[0].records[1].path, atol=1e-5)
    # VQA labels cover exactly the answer tokens and the closing <|im_end|>.
    tok = tiny_model.tokenizer
    answer = tok.encode("Yes, the lane ahead is clear.", add_special_tokens=False)
    labels = batch.vqa.labels[0]
    assert labels[labels != IGNORE_INDEX].tolist() == answer + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert batch.vqa.observation.input_ids.shape == batch.vqa.labels.shape
    out = tiny_model(batch.observation, batch.state)
    assert out.path.shape == batch.path.shape


def test_synthetic_dataset_is_readable(tmp_path):
    from automot.training.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "syn", episodes=2, seed=3)
    episodes = read_dataset(root)
    assert len(episodes) == 2 and all(len(e.records) > 5 for e in episodes)
    rec = episodes[0].records[3]
    assert episodes[0].load_image(rec.frame).shape == (32, 64, 3)
    # Waypoints are future positions: monotone along x for a vehicle that never reverses.
    assert np.all(np.diff(rec.waypoints[:, 0]) >= -1e-6)
