"""The front door stays true and small: README.md shows the two set-up commands that .ci/run and
a new user rely on and stays under 10 KiB; docs/spec-reference.md is the reference the
validating models generate; every relative link in the README and the docs pages resolves."""

import re
from pathlib import Path

import pytest
from conftest import REPO

from iptkit.pipelines.reference import PAGE, reference_page, spec_reference

README_MAX_BYTES = 10_240
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def doc_pages() -> list[Path]:
    pages = [REPO / "README.md", REPO / "trainer" / "README.md"]
    return pages + sorted((REPO / "docs").glob("*.md"))


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in FENCE.sub("", markdown).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def relative_links(markdown: str) -> list[str]:
    """Link and image targets outside code, that are neither URLs nor mail addresses."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    return [t for t in INLINE_LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md":
            if fragment not in anchors(resolved.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return problems


def test_spec_reference_page_is_current():
    page = (REPO / PAGE).read_text(encoding="utf-8")
    assert page == reference_page(), (
        f"{PAGE} is stale: run `iptkit reference --write {PAGE}` from the repository root"
    )
    assert spec_reference() in page


def test_readme_shows_the_two_commands_and_ci_runs_make_test():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1].strip() == "make test"


def test_readme_is_at_most_10_kib():
    size = len((REPO / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes (limit {README_MAX_BYTES:,}): move detail to docs/"
    )


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {t.partition("#")[0] for t in relative_links(readme)}
    missing = [
        f"docs/{p.name}" for p in (REPO / "docs").glob("*.md") if f"docs/{p.name}" not in linked
    ]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    assert not broken_links(page), f"{page.relative_to(REPO)}: {broken_links(page)}"


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "there.md").write_text("# A heading, with `code`\n\ntext\n")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n"
        "[ok](sub/there.md) ![ok](pic.png) [ok](sub/there.md#a-heading-with-code) [ok](#top)\n"
        "[web](https://example.org/x) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[gone](missing.md) ![gone](img/missing.png) [anchor](sub/there.md#no-such)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "img/missing.png: no such file",
        "sub/there.md#no-such: no heading #no-such in there.md",
    ]


# A module path in the docs' prose or code spans: folder/.../name.py under a code folder.
MODULE_PATH = re.compile(
    r"\b((?:iptkit|pipelines|transforms|trainer|eval|tests|benchmarks)/[\w/]+\.py)\b"
)


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_paths_named_in_the_docs_exist(page):
    missing = sorted({p for p in MODULE_PATH.findall(page.read_text()) if not (REPO / p).exists()})
    assert missing == [], f"{page.name} names modules that do not exist: {missing}"


def test_architecture_places_every_package():
    """docs/architecture.md's layout names every package folder of the code."""
    text = (REPO / "docs" / "architecture.md").read_text()
    layout = text[text.index("## Layout") : text.index("## Record")]
    folders = [
        p.parent.relative_to(REPO)
        for top in ("iptkit", "pipelines", "transforms", "trainer", "eval", "configs")
        for p in (REPO / top).rglob("__init__.py")
        if ".venv" not in p.parts
    ]
    for folder in folders:
        name = folder.name + "/"
        assert name in layout, f"docs/architecture.md's layout does not place {folder}/"
