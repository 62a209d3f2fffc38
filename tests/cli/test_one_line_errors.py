"""One CLI convention: every `automot` subcommand reports a failure as ONE stderr line with its shared exit code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from automot.cli import main, one_line
from automot.errors import EXIT_CODE_HELP, AutoMoTError, ConfigError, ExitCode


def run(argv: list[str], capsys, ignore_prefix: str | None = None) -> tuple[int, str]:
    """Run ``automot argv`` in-process; return (exit code, stderr) with ``ignore_prefix`` progress lines dropped."""
    code = main(argv)
    err = capsys.readouterr().err
    if ignore_prefix:
        err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith(ignore_prefix))
    return code, err


def assert_one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith(f"automot {command}: error: "), lines[0]
    assert "\\n" not in lines[0]
    return lines[0]


# --- automot --help and the line format -----------------------------------------------------------------------


def test_help_lists_every_exit_code():
    proc = subprocess.run([sys.executable, "-m", "automot.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert EXIT_CODE_HELP in proc.stdout  # RawDescription formatter keeps the table's lines
    for code in ExitCode:
        assert f"  {int(code):>3}  " in proc.stdout


def test_subcommand_help_points_to_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["drive", "--help"])
    assert info.value.code == 0
    assert "exit codes: see `automot --help`" in capsys.readouterr().out


def test_argparse_usage_error_keeps_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "--preset", "tiny"])  # --out is required
    assert info.value.code == ExitCode.USAGE == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_one_line_joins_multiline_messages():
    assert one_line("invalid config x:\n  a: bad\n  b: worse\n") == "invalid config x: a: bad; b: worse"
    assert one_line("") == ""


def test_real_process_prints_one_line_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "automot.cli", "model", "--preset", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == ExitCode.USAGE
    assert "unknown preset 'nope'" in assert_one_error_line(proc.stderr, "model")


# --- ConfigError / UsageError -> 2 everywhere --------------------------------------------------------------------


def test_model_unknown_preset(capsys):
    code, err = run(["model", "--preset", "nope"], capsys)
    assert code == ExitCode.USAGE
    assert "unknown preset 'nope'" in assert_one_error_line(err, "model")


@pytest.fixture
def bad_model_yaml(tmp_path):
    path = tmp_path / "bad_model.yaml"
    path.write_text(yaml.safe_dump({"understanding": {"family": "nope"}}))
    return path


def test_bench_bad_config_file(bad_model_yaml, capsys):
    code, err = run(["bench", "--preset", str(bad_model_yaml), "--iters", "1", "--warmup", "0"], capsys, "[bench")
    assert code == ExitCode.USAGE
    assert "understanding.family" in assert_one_error_line(err, "bench")


def test_export_bad_checkpoint_config(bad_model_yaml, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.yaml").write_text(bad_model_yaml.read_text())
    (ckpt / "model.safetensors").write_bytes(b"")
    code, err = run(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "out")], capsys)
    assert code == ExitCode.USAGE
    assert "understanding.family" in assert_one_error_line(err, "export")


def test_train_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "train.yaml"
    bad.write_text(yaml.safe_dump({"optim": {"grad_accum": "two"}, "no_such_section": 1}))
    code, err = run(["train", "--config", str(bad)], capsys)
    assert code == ExitCode.USAGE
    line = assert_one_error_line(err, "train")
    assert "optim.grad_accum" in line and "no_such_section" in line  # every problem, joined on one line


def test_train_missing_config_file(tmp_path, capsys):
    code, err = run(["train", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert code == ExitCode.USAGE
    assert "nope.yaml" in assert_one_error_line(err, "train")


def test_drive_bad_agent_config_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(tmp_path))  # drive sets it; restore it afterwards
    bad = tmp_path / "agent.yaml"
    bad.write_text(yaml.safe_dump({"model": {"bogus": 1}, "recorder": 3}))
    argv = ["drive", "--route", "highway_lane_keep", "--config", str(bad), "--out", str(tmp_path / "out")]
    code, err = run([*argv, "--ticks", "3", "--no-progress"], capsys)
    assert code == ExitCode.USAGE
    line = assert_one_error_line(err, "drive")
    assert "model.bogus" in line and "recorder" in line
    assert not (tmp_path / "out").exists()  # refused before OUT exists: no DS 0 results.json (issue 20 case 15)


def test_drive_unknown_route(tmp_path, capsys):
    code, err = run(["drive", "--route", "nowhere", "--agent", "expert", "--out", str(tmp_path / "o")], capsys)
    assert code == ExitCode.USAGE
    assert "known routes" in assert_one_error_line(err, "drive")
    assert not (tmp_path / "o").exists()  # rejected before anything is written


def test_bench_unknown_backend(capsys):
    code, err = run(["bench", "--preset", "tiny", "--backends", "torch,tflite"], capsys)
    assert code == ExitCode.USAGE
    assert "tflite" in assert_one_error_line(err, "bench")


def test_collect_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # a malformed size is refused while the command line is parsed
        main(["collect", "--routes", "merge", "--out", str(tmp_path), "--image-size", "big"])
    assert info.value.code == ExitCode.USAGE
    assert "--image-size 'big'" in assert_one_error_line(capsys.readouterr().err, "collect")
    code, err = run(["collect", "--routes", "nowhere", "--out", str(tmp_path)], capsys)
    assert code == ExitCode.USAGE
    assert "unknown route" in assert_one_error_line(err, "collect")


def test_convert_requires_folders(capsys):
    code, err = run(["convert"], capsys)
    assert code == ExitCode.USAGE
    assert "--from-automot" in assert_one_error_line(err, "convert")


# --- 3: missing optional dependency; 4: check failed; 5: run failed ----------------------------------------------


def test_export_missing_onnxruntime(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    code, err = run(["export", "--preset", "tiny", "--out", str(tmp_path)], capsys, "[export]")
    assert code == ExitCode.ENVIRONMENT
    assert "onnxruntime" in assert_one_error_line(err, "export")


def test_export_parity_failure(tmp_path, capsys, monkeypatch):
    import onnxruntime  # noqa: F401  (the dev extra brings it: a missing one must fail here, not skip)

    from automot.runtime import export as export_mod

    monkeypatch.setitem(export_mod.TOLERANCES, "fp32", {"max_abs": -1.0, "cosine_min": 2.0})  # nothing passes
    code, err = run(["export", "--preset", "tiny", "--out", str(tmp_path)], capsys, "[export]")
    assert code == ExitCode.CHECK_FAILED == 4
    assert "parity" in assert_one_error_line(err, "export")
    assert (tmp_path / "parity.json").is_file()


CRASHING_AGENT = """
from automot.world.expert_agent import ExpertAgent


def get_entry_point():
    return "CrashingAgent"


class CrashingAgent(ExpertAgent):
    def run_step(self, input_data, timestamp):
        raise RuntimeError("boom\\nsecond line of the crash")
"""


def test_drive_agent_crash(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(tmp_path))
    agent = tmp_path / "crashing_cli_agent.py"
    agent.write_text(textwrap.dedent(CRASHING_AGENT))
    argv = ["drive", "--route", "highway_lane_keep", "--agent", str(agent), "--out", str(tmp_path / "out")]
    code, err = run([*argv, "--ticks", "5", "--no-progress"], capsys)
    assert code == ExitCode.RUN_FAILED == 5
    line = assert_one_error_line(err, "drive")
    assert "Agent crashed: RuntimeError: boom; second line of the crash" in line
    assert "results.json" in line and (tmp_path / "out" / "results.json").is_file()


# --- 1: an unexpected exception; AUTOMOT_DEBUG=1; 130: interrupted -----------------------------------------------


def _explode(*args, **kwargs):
    raise RuntimeError("kaputt\nwith a second line")


def test_unexpected_exception_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("AUTOMOT_DEBUG", raising=False)
    monkeypatch.setattr("automot.model.summary.parameter_summary", _explode)
    code, err = run(["model", "--preset", "tiny"], capsys)
    assert code == ExitCode.INTERNAL == 1
    line = assert_one_error_line(err, "model")
    assert "RuntimeError: kaputt; with a second line" in line and "AUTOMOT_DEBUG=1" in line


def test_automot_debug_reraises(capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_DEBUG", "1")
    monkeypatch.setattr("automot.model.summary.parameter_summary", _explode)
    with pytest.raises(RuntimeError, match="kaputt"):
        main(["model", "--preset", "tiny"])


def test_automot_debug_keeps_exit_code_of_known_errors(capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_DEBUG", "1")
    code = main(["model", "--preset", "nope"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "Traceback" in err and err.splitlines()[-1].startswith("automot model: error: unknown preset")


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("automot.model.summary.parameter_summary", interrupt)
    code, err = run(["model", "--preset", "tiny"], capsys)
    assert code == ExitCode.INTERRUPTED == 130
    assert err.splitlines() == ["automot model: interrupted"]


# --- domain errors map onto the shared classes (and keep their builtin bases) ------------------------------------


@pytest.mark.parametrize(
    "path, name, code, builtin",
    [
        ("automot.runtime.engines", "MissingDependencyError", ExitCode.ENVIRONMENT, RuntimeError),
        ("automot.runtime.export", "ExportError", ExitCode.USAGE, RuntimeError),
        ("automot.model.understanding", "PretrainedLoadError", ExitCode.USAGE, RuntimeError),
        ("automot.training.data.schema", "DatasetError", ExitCode.USAGE, ValueError),
        ("automot.world.routes", "UnknownRouteError", ExitCode.USAGE, KeyError),
        ("automot.world.runner", "AgentCrashed", ExitCode.RUN_FAILED, RuntimeError),
        ("automot.agent.rigs", "SensorConfigError", ExitCode.USAGE, ValueError),
        ("automot.world.sensors", "SensorConfigurationInvalid", ExitCode.USAGE, ValueError),
        ("automot.agent.runtime_factory", "RuntimeUnavailableError", ExitCode.ENVIRONMENT, RuntimeError),
    ],
)
def test_domain_errors_carry_exit_codes(path, name, code, builtin):
    import importlib

    cls = getattr(importlib.import_module(path), name)
    assert issubclass(cls, AutoMoTError) and issubclass(cls, builtin)
    assert cls.exit_code == code


def test_config_errors_are_the_shared_class():
    from automot.agent import config as agent_config
    from automot.model import config as model_config
    from automot.training import config as train_config

    for module in (model_config, agent_config, train_config):
        assert issubclass(module.ConfigError, ConfigError)
