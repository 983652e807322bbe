"""Every pointer in the docs and the code leads somewhere: links and their anchors, paths of
files in the repository, `pipeline.x.y` names, sections cited by name ("What studies reach"),
and nothing outside the repository (`../`)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [
    *DOCS,
    *sorted(ROOT.glob("pipeline/**/*.py")),
    *sorted(ROOT.glob("bench/*.py")),
    *sorted(ROOT.glob("tests/*.py")),
    *sorted(ROOT.glob("search_spaces/*.yaml")),
    ROOT / "Makefile",
    ROOT / "MLproject",
    ROOT / "pyproject.toml",
    ROOT / ".ci" / "run",
]
SOURCES.remove(Path(__file__).resolve())  # its examples point nowhere on purpose
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w/.])((?:pipeline|bench|tests|search_spaces|docs|\.ci)/[\w/.-]*\w)")
DOTTED = re.compile(r"(?<![\w/.])(pipeline(?:\.\w+)+)")
# `docs/studies.md, "Search that earns its keep"`, `[performance.md](performance.md), "Running it"`
SECTION = re.compile(r"((?:docs/)?[\w-]+\.md|README)(?:\]\([^)]*\))?\)?,\s*\"([^\"]+)\"")
OUTSIDE = re.compile(r"(?<![\w.])(\.\./[\w/.-]*\w)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m[1]) for m in re.finditer(r"^#+\s+(.*)$", page.read_text(), re.M)}


def resolves(name: str) -> bool:
    """`pipeline.a.b.c`: the longest prefix that is a module, the rest attributes of it."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # a parent that is a module, not a package
            spec = None
        if spec is None:
            continue
        obj = importlib.import_module(module)
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def pointers(source: Path, text: str | None = None) -> list[str]:
    """What in `source` (or in `text`, read as if it were there) points nowhere, one line
    each."""
    text = source.read_text() if text is None else text
    here = source.relative_to(ROOT)
    bad = []
    if source.suffix == ".md":
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            page = (source.parent / path).resolve() if path else source
            if not page.exists():
                bad.append(f"{here}: link to missing {target}")
            elif anchor and page.suffix == ".md" and anchor not in anchors(page):
                bad.append(f"{here}: link to a missing section {target}")
    bad += [f"{here}: missing path {p}" for p in PATH.findall(text) if not (ROOT / p).exists()]
    bad += [f"{here}: no such name {n}" for n in DOTTED.findall(text) if not resolves(n)]
    for page, section in SECTION.findall(text):
        target = ROOT / ("README.md" if page == "README" else page)
        target = target if target.exists() else ROOT / "docs" / page
        wanted = slug(" ".join(section.split()))
        if not target.exists() or not any(a.startswith(wanted) for a in anchors(target)):
            bad.append(f'{here}: no section "{section}" in {page}')
    bad += [
        f"{here}: points outside the repository or nowhere: {p}"
        for p in OUTSIDE.findall(text)
        if not (source.parent / p).exists()
    ]
    return bad


def test_every_pointer_in_docs_and_code_leads_somewhere():
    assert [line for source in SOURCES for line in pointers(source)] == []


@pytest.mark.parametrize(
    "text, found",
    [
        ("see [tuning](tuning.md#running-a-study)", []),
        ("see [tuning](tuning.md#no-such-section)", ["link to a missing section"]),
        ("see [gone](gone.md)", ["link to missing gone.md"]),
        ("in pipeline/tuning/search/budget.py", []),
        ("in pipeline/tuning/gone.py", ["missing path pipeline/tuning/gone.py"]),
        ("as pipeline.core.training.train does", []),
        ("as pipeline.experiments.FAST_CNN says", ["no such name pipeline.experiments.FAST_CNN"]),
        ('docs/studies.md, "Search that earns its keep"', []),  # a heading's start
        ('docs/tuning.md, "Running a\n study"', []),
        ('docs/tuning.md, "What nobody measured"', ['no section "What nobody measured"']),
        ("the study (../shared/STUDY.md)", ["points outside the repository or nowhere"]),
    ],
)
def test_the_check_finds_what_points_nowhere(text, found):
    bad = pointers(ROOT / "docs" / "page.md", text)  # read as a page of docs/
    assert len(bad) == len(found) and all(f in b for f, b in zip(found, bad)), bad
