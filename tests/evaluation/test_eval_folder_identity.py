"""An evaluation folder is one configuration (issue 21.0): eval.json and every route record carry the agent-config
and checkpoint hashes; a run into the folder with another config or other checkpoint bytes is refused with one
line naming what differs; more seeds / routes with the same configuration only add jobs; the report's header names
the config (linked), the checkpoint and its hash, the code version and the command."""

from __future__ import annotations

import json
import shutil

import pytest
from doubles import eval_compare_fixture as F

from automot.errors import UsageError
from automot.evaluation import folder as folder_mod
from automot.evaluation import identity as ident_mod
from automot.evaluation.report import write_report
from automot.world.cli import overridden_agent_config

REPO_CONFIG = str(ident_mod.REPO_ROOT / "leaderboard_configs" / "demo_tiny.yaml")


def _open(out, ids, config=REPO_CONFIG, checkpoint=None, world="embedded", saved=False):
    return folder_mod.open_folder(
        out,
        world=world,
        routes="all",
        job_ids=ids,
        agent_config=config,
        checkpoint=checkpoint,
        argv=["eval", "--routes", "all"],
        saved_config=saved,
    )


def test_same_configuration_extends_other_configuration_is_refused(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    ids, extra = _open(out, ["merge_seed0", "merge_seed1"])
    assert ids == ["merge_seed0", "merge_seed1"]
    data = json.loads((out / "eval.json").read_text())
    assert extra == {
        "config_sha256": data["identity"]["config_sha256"],
        "checkpoint_sha256": data["identity"]["checkpoint_sha256"],
    }
    assert data["identity"]["checkpoint_files"]["model.safetensors"]  # the checkpoint's files are hashed
    assert (out / "agent_config.yaml").is_file()  # the saved config the report links
    # more seeds, same configuration: the old jobs are kept, the new ones added after them
    ids, _ = _open(out, ["merge_seed1", "merge_seed2"])
    assert ids == ["merge_seed0", "merge_seed1", "merge_seed2"]
    # --set model.refiner=true into the same folder: refused, naming the key and both values
    merged = overridden_agent_config(REPO_CONFIG, ["model.refiner=true"], tmp_path)
    with pytest.raises(UsageError, match=r"model\.refiner \(false -> true\)") as err:
        _open(out, ["merge_seed0"], config=merged, saved=True)
    assert "\n" not in str(err.value)
    assert json.loads((out / "eval.json").read_text())["job_ids"] == ids  # nothing changed
    with pytest.raises(UsageError, match="--world embedded"):
        _open(out, ["x"], world="carla")


def test_other_checkpoint_bytes_at_the_same_path_are_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ident_mod.REPO_ROOT / "checkpoints" / "tiny_demo", ckpt)
    out = tmp_path / "eval"
    out.mkdir()
    _open(out, ["merge_seed0"], checkpoint=str(ckpt))
    with open(ckpt / "refiner.safetensors", "r+b") as fh:  # retrained weights, same file names
        fh.seek(100)
        fh.write(b"\x01\x02\x03")
    with pytest.raises(UsageError, match=r"checkpoint refiner\.safetensors \(sha256 [0-9a-f]{12} -> [0-9a-f]{12}\)"):
        _open(out, ["merge_seed0"], checkpoint=str(ckpt))


def test_folder_without_identity_is_checked_against_its_route_records(tmp_path):
    # a folder from an older version: no identity in eval.json, but the route records carry the hashes
    xml = F.route_xml(tmp_path, ["101"])
    out = F.build(tmp_path, "eval", {("101", 0): (50.0, True)}, xml)
    rec = {"job_id": "101_seed0", "config_sha256": "0" * 64, "checkpoint_sha256": None}
    (out / "routes" / "101_seed0" / "record.json").write_text(json.dumps(rec))
    with pytest.raises(UsageError, match="config hash"):
        _open(out, ["101_seed0"])


def test_report_header_names_config_checkpoint_code_version_and_command(tmp_path):
    xml = F.route_xml(tmp_path, ["101"])
    out = F.build(tmp_path, "eval", {("101", 0): (50.0, True)}, xml)
    _open(out, ["101_seed0"])
    ident = json.loads((out / "eval.json").read_text())["identity"]
    md = write_report(out)["markdown"].read_text()
    assert f"- **Config**: [agent_config.yaml (sha256 {ident['config_sha256'][:12]})](agent_config.yaml)" in md
    assert f"(sha256 {ident['checkpoint_sha256'][:12]})" in md and "tiny_demo" in md
    assert "- **Code version**: " + (ident["git_describe"] or "unknown") in md
    assert "`automot eval --routes all`" in md
