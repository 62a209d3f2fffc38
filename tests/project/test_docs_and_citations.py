"""Facts the code relies on live in docs/, and what the code and comments point at exists.

- No tracked file cites the reference sheets that were never part of the repository (they were replaced by the
  docs/ files below); a citation names the docs/ file and section instead.
- Every repository path named in code, comments, YAML or Markdown (``model/...py``, ``tests/...py``, ``docs/...md``)
  exists, except where the line (or the one before) names an upstream repository (those paths are the upstream's).
- Each facts document cites its upstream sources by repository and 40-hex commit.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from doubles.paths import REPO

FACT_DOCS = (
    "docs/released-checkpoint.md",
    "docs/released-agent.md",
    "docs/leaderboard-agent-interface.md",
    "docs/bench2drive-metrics.md",
)
# The old out-of-repo reference sheets, by name, and the "spec §N" shorthand that pointed into one of them.
OUTSIDE = re.compile(
    r"shared/reference|automot-checkpoint-spec\.md|automot-reference\.md|mot-and-deployment\.md|environment-notes\.md"
    r"|(?<![-\w/])leaderboard-interface\.md|(?<![\w/\[(])bench2drive-metrics\.md|\bspec §|\bSpec §"
)
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:agent|model|runtime|world|training|evaluation|debugging|tests|scripts|docs|docker|"
    r"leaderboard_configs|configs)/[\w/.\-]*\w\.(?:py|md|yaml|yml|sh|toml|json))"
)
UPSTREAM = re.compile(r"OscarHuangWind|Thinklab-SJTU|carla-simulator|autonomousvision|Physical-Intelligence|upstream")
TEXT = (".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".txt")


def _tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if f.endswith(TEXT) and (REPO / f).is_file()]


def _lines(name: str):
    text = (REPO / name).read_text(encoding="utf-8", errors="replace")
    yield from enumerate(text.splitlines(), 1)


def test_no_citation_of_reference_sheets_outside_the_repository():
    found = [
        f"{name}:{n}: {line.strip()[:100]}"
        for name in _tracked_text_files()
        if name != "tests/project/test_docs_and_citations.py"
        for n, line in _lines(name)
        if OUTSIDE.search(line)
    ]
    assert not found, "cite docs/ instead:\n" + "\n".join(found)


def test_named_repository_paths_exist():
    missing = []
    for name in _tracked_text_files():
        previous = ""
        for n, line in _lines(name):
            if not UPSTREAM.search(previous + line):  # an upstream citation may wrap onto the next line
                missing += [f"{name}:{n}: {m.group(1)}" for m in REPO_PATH.finditer(line)]
            previous = line
    missing = [m for m in missing if not (REPO / m.rsplit(": ", 1)[1]).exists()]
    assert not missing, "comments name files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", FACT_DOCS)
def test_fact_documents_cite_repository_and_commit(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    assert re.search(r"\b[0-9a-f]{40}\b", text), f"{doc}: no upstream commit"
    assert re.search(r"\b(OscarHuangWind/AutoMoT|carla-simulator/leaderboard|Thinklab-SJTU/Bench2Drive)\b", text)


def test_the_checker_catches_what_it_is_for():
    # the patterns themselves: an old citation, a bare spec section, and a missing path are found
    assert OUTSIDE.search("see automot-checkpoint-spec.md §1.3") and OUTSIDE.search("(spec §5.4)")
    assert OUTSIDE.search("leaderboard-interface.md §4") and not OUTSIDE.search("docs/leaderboard-agent-interface.md")
    assert not OUTSIDE.search("docs/bench2drive-metrics.md §4")
    assert not OUTSIDE.search("[bench2drive-metrics.md §4](bench2drive-metrics.md#4-penalties)")  # a docs/ link
    # split in two so that a grep for stale flat test paths (tests/ then test_) does not find this deliberate one
    m = REPO_PATH.search("audited by tests/" + "test_model_released_names.py.")
    assert m and not (REPO / m.group(1)).exists()
    assert REPO_PATH.search("the released Automot/evaluation/inference.py") is None
