"""The one typed-config mechanism (automot.config): values converted to the declared types, problems named by
their full dotted path and reported together, one-line file errors, atomic saves."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

import automot.config as typed_config
from automot.config import from_dict, load_yaml, read_yaml_mapping, save_yaml, to_dict
from automot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Inner:
    rate: float = 1.0
    name: str = "a"


@dataclass
class Sample:
    mode: Literal["fast", "slow"] = "fast"
    count: int = 1
    flag: bool = False
    maybe: int | None = None
    either: int | str = 0
    pair: tuple[int, int] = (1, 2)
    many: tuple[float, ...] = ()
    items: list[int] = field(default_factory=list)
    table: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    inners: list[Inner] = field(default_factory=list)
    opt_inner: Inner | None = None
    anything: Any = None


@dataclass
class Needs:
    size: int
    label: str = "x"


# ---------------------------------------------------------------------------------------------------------------
# the mechanism
# ---------------------------------------------------------------------------------------------------------------


def test_values_are_converted_to_the_declared_types():
    cfg = from_dict(
        Sample,
        {
            "mode": "slow",
            "count": 3,
            "flag": True,
            "maybe": None,
            "either": "text",
            "pair": [4, 5],
            "many": [1, 2.5],
            "items": [7, 8],
            "table": {"k": 2},
            "inner": {"rate": 3},
            "inners": [{"name": "b"}, {}],
            "opt_inner": {"name": "c"},
            "anything": {"free": [1, "form"]},
        },
    )
    assert cfg == Sample(
        mode="slow",
        count=3,
        flag=True,
        maybe=None,
        either="text",
        pair=(4, 5),
        many=(1.0, 2.5),
        items=[7, 8],
        table={"k": 2.0},
        inner=Inner(rate=3.0),
        inners=[Inner(name="b"), Inner()],
        opt_inner=Inner(name="c"),
        anything={"free": [1, "form"]},
    )
    assert isinstance(cfg.inner.rate, float) and isinstance(cfg.table["k"], float)
    assert isinstance(cfg.pair, tuple) and isinstance(cfg.many[0], float)
    assert from_dict(Sample, None) == Sample() and from_dict(Sample, {}) == Sample()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "medium"}, "mode: expected one of 'fast', 'slow', got 'medium' (str)"),
        ({"count": True}, "count: expected int, got True (bool)"),
        ({"count": 2.0}, "count: expected int, got 2.0 (float)"),
        ({"flag": 1}, "flag: expected bool, got 1 (int)"),
        ({"maybe": "x"}, "maybe: expected int or null, got 'x' (str)"),
        ({"either": 1.5}, "either: expected int or str, got 1.5 (float)"),
        ({"either": None}, "either: expected int or str, got None (NoneType)"),
        ({"pair": [1]}, "pair: expected a list [int, int], got [1] (list)"),
        ({"pair": [1, "b"]}, "pair[1]: expected int, got 'b' (str)"),
        ({"many": [1, "x"]}, "many[1]: expected a number, got 'x' (str)"),
        ({"items": 3}, "items: expected a list of int, got 3 (int)"),
        ({"table": {"k": "v"}}, "table.k: expected a number, got 'v' (str)"),
        ({"table": [1]}, "table: expected a mapping, got [1] (list)"),
        ({"inner": {"rate": "hi"}}, "inner.rate: expected a number, got 'hi' (str)"),
        ({"inner": 5}, "inner: expected a mapping (Inner section), got 5 (int)"),
        ({"inners": [{}, {"nmae": "x"}]}, "inners[1].nmae: unknown field (did you mean 'name'?)"),
        ({"inners": [{}, {"rate": None}]}, "inners[1].rate: expected a number, got None (NoneType)"),
        ({"opt_inner": {"rate": "x"}}, "opt_inner.rate: expected a number, got 'x' (str)"),
        ({"opt_inner": 5}, "opt_inner: expected a mapping (Inner section) or null, got 5 (int)"),
        ({"inner": {"rtae": 2}}, "inner.rtae: unknown field (did you mean 'rate'?)"),
        ({"inner": {"zzz": 2}}, "inner.zzz: unknown field (known: rate, name)"),
    ],
)
def test_each_problem_names_the_full_dotted_path(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Sample, data, source="sample.yaml")
    assert info.value.problems == [message]
    assert str(info.value) == f"sample.yaml: {message}"
    assert info.value.source == "sample.yaml"


def test_every_problem_is_reported_in_one_error():
    with pytest.raises(ConfigError) as info:
        from_dict(Sample, {"count": "x", "inner": {"rtae": 1}, "mode": 3, "inners": [{"rate": "r"}]}, "s.yaml")
    expected = [
        "count: expected int, got 'x' (str)",
        "inner.rtae: unknown field (did you mean 'rate'?)",
        "mode: expected one of 'fast', 'slow', got 3 (int)",
        "inners[0].rate: expected a number, got 'r' (str)",
    ]
    assert info.value.problems == expected
    assert str(info.value) == "s.yaml: 4 problems: " + "; ".join(expected)
    assert "\n" not in str(info.value)  # one line on stderr


def test_path_prefix_and_required_fields():
    with pytest.raises(ConfigError) as info:
        from_dict(Needs, {"label": 3}, path="section")
    assert info.value.problems == ["section.label: expected str, got 3 (int)", "section.size: required field missing"]
    with pytest.raises(ConfigError) as info:
        from_dict(Needs, [1])
    assert info.value.problems == ["<root>: expected a mapping (Needs section), got [1] (list)"]
    assert from_dict(Needs, {"size": 2}) == Needs(2)


def test_type_names():
    assert typed_config.type_name(int | None) == "int or null"
    assert typed_config.type_name(tuple[int, ...]) == "a list of int"
    assert typed_config.type_name(Literal["a", 1]) == "one of 'a', 1"
    assert typed_config.type_name(Inner) == "a mapping (Inner section)"


def test_file_errors_are_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml(Sample, missing)
    assert str(info.value) == f"{missing}: config file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("count: 1\nmode: a: b\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(Sample, bad)
    text = str(info.value)
    assert text.startswith(f"{bad}: not valid YAML at line 2, column 8: ") and "\n" not in text
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError) as info:
        read_yaml_mapping(listy)
    assert str(info.value) == f"{listy}: expected a mapping at the top level, got [1] (list)"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(Sample, empty) == Sample()
    with pytest.raises(ConfigError, match=r"type\.yaml: count: expected int, got 'two' \(str\)"):
        (tmp_path / "type.yaml").write_text("count: two\n")
        load_yaml(Sample, tmp_path / "type.yaml")


def test_save_load_round_trip_and_atomic_write(tmp_path, monkeypatch):
    cfg = Sample(mode="slow", pair=(3, 4), many=(0.5,), table={"a": 1.5}, inners=[Inner(2.0, "z")], anything=[1])
    path = save_yaml(cfg, tmp_path / "sub" / "sample.yaml")
    assert path == tmp_path / "sub" / "sample.yaml"
    assert yaml.safe_load(path.read_text())["pair"] == [3, 4]  # tuples are written as plain lists
    assert load_yaml(Sample, path) == cfg

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(typed_config.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_yaml(Sample(count=99), path)
    monkeypatch.undo()
    assert load_yaml(Sample, path) == cfg  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["sample.yaml"]  # no temporary file left


def test_init_false_fields_are_not_config_values():
    @dataclass
    class WithNote:
        size: int = 1
        note: str = field(default="internal", init=False)

    assert to_dict(WithNote(size=2)) == {"size": 2}
    with pytest.raises(ConfigError, match=r"note: unknown field"):
        from_dict(WithNote, {"note": "x"})


def test_to_dict_is_plain_yaml():
    from automot.agent.config import AgentConfig, config_to_dict

    data = config_to_dict(dataclasses.replace(AgentConfig(), image_size=(8, 4)))
    assert data["image_size"] == [8, 4]
    assert yaml.safe_load(yaml.safe_dump(data)) == data
