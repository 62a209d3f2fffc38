"""`automot train --overwrite` into a folder that holds an earlier training run is refused (exit 2, nothing touched)
instead of mixing the earlier final/ and checkpoints with the new run's files and appending its steps to the
earlier logs/scalars.jsonl (issue 20, case 17)."""

from __future__ import annotations

import yaml

from automot.cli import main
from automot.training.synthetic import write_synthetic_dataset


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_of_an_earlier_run_is_refused(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", episodes=2, seed=0)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "model.safetensors").write_bytes(b"earlier weights")
    (run / "logs").mkdir()
    (run / "logs" / "scalars.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"output_dir": str(run), "data": {"train": [str(data)]}}))
    before = _tree(run)
    assert main(["train", "--config", str(cfg), "--overwrite", "--max-steps", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("automot train: error: ") and "earlier training run" in err[0], err
    assert "final" in err[0] and "logs" in err[0] and "--resume" in err[0]
    assert _tree(run) == before


def test_overwrite_of_a_folder_without_a_run_is_accepted_by_the_check(tmp_path):
    from automot.training.cli import _refuse_mixing

    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("not a run")
    _refuse_mixing(other, "--out")  # nothing of a run there: nothing would be mixed
