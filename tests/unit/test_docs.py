"""The documentation stands alone: README.md is a landing page (the two commands first, a first
call, a table of contents), the rest lives in docs/, the chart's README and the benchmarks'
README, and every link among them resolves inside the repository, to a file that exists and a
heading that exists there (GitHub's anchors). Nothing points outside the checkout: a link to
../shared is dead on a fresh clone."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from face_api.ops.settings import Settings
from tests.paths import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [
    README,
    *DOCS,
    ROOT / "kubernetes" / "face-api" / "README.md",
    ROOT / "benchmarks" / "README.md",
]
README_MAX_LINES = 160

FENCE = re.compile(r"^ *(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def without_code_spans(line: str) -> str:
    return re.sub(r"(`+)(.+?)\1", "", line)


def links(path: Path) -> list[str]:
    prose = "\n".join(without_code_spans(line) for line in prose_lines(path.read_text()))
    return LINK.findall(prose) + REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and code as their text), lowercased, every
    character but letters, digits, spaces, `-` and `_` removed, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    kept = "".join(
        c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN" or c.isdigit()
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a file, a repeated one numbered as GitHub numbers it."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text()):
        if match := HEADING.match(line):
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def test_the_pages_are_there():
    assert {name(p) for p in DOCS} >= {
        "docs/api.md",
        "docs/galleries.md",
        "docs/operations.md",
        "docs/containers.md",
        "docs/architecture.md",
    }
    for page in PAGES:
        assert page.is_file(), name(page)


def test_slugs_follow_githubs_rules():
    assert slug("Speed: where the time goes, and sizing") == "speed-where-the-time-goes-and-sizing"
    assert slug("Packs from insightface's model zoo") == "packs-from-insightfaces-model-zoo"
    assert slug("Backups, and moving galleries between stores") == (
        "backups-and-moving-galleries-between-stores"
    )
    assert (
        slug("Galleries at a million faces (issue 35)") == "galleries-at-a-million-faces-issue-35"
    )
    assert slug("The `/v1` API") == "the-v1-api"


def test_link_extraction_sees_what_a_reader_clicks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A `b`, c!\n[a](x.md) `[b](y.md)` [c](https://e.org) [`d`](z.md#q)\n"
        "```\n[e](w.md)\n# not a heading\n```\n[f]: v.md\n# A `b`, c!\n"
    )
    assert links(page) == ["x.md", "https://e.org", "z.md#q", "v.md"]
    assert anchors(page) == {"a-b-c", "a-b-c-1"}


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_link_resolves_inside_the_repository(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            assert target.startswith(("http://", "https://", "mailto:")), target
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading #{anchor} in {name(resolved)}")
    assert broken == [], f"{name(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_nothing_points_outside_the_checkout(page):
    assert "../shared" not in page.read_text(), name(page)


@pytest.mark.parametrize("page", DOCS, ids=name)
def test_each_docs_page_starts_with_the_way_back(page):
    first = page.read_text().splitlines()[0]
    assert "](../README.md)" in first, first


def test_the_readme_is_a_landing_page():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    first, second = re.findall(r"```(?:bash|console)\n(.*?)```", text, flags=re.DOTALL)[:2]
    assert first.strip() == "./scripts/serve.sh"
    assert second.strip() == "./scripts/test.sh"
    # Its table of contents reaches every page.
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README)
        if not target.startswith(("http://", "https://"))
    }
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README.md does not link {name(page)}"


def test_one_settings_table_documents_every_setting():
    page = (ROOT / "docs" / "operations.md").read_text()
    table = page.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`FACE_[^|]+) \|", table, flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`(FACE_\w+)`", row)}
    assert documented == {f"FACE_{field.upper()}" for field in Settings.model_fields}
