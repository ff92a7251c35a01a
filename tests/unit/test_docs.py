"""Every document the code or the docs point at exists: a docstring's ``docs/….md`` (or a bare
``….md`` naming one of them), and every relative link in the README and in ``docs/``, anchors
included."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SOURCES = [path for folder in ("lib_fusion", "scripts", "bench", "tests") for path in (ROOT / folder).rglob("*.py")]


def test_every_document_a_docstring_names_exists():
    named = {(path, name) for path in SOURCES for name in re.findall(r"\b(?:docs/)?([\w-]+\.md)\b", path.read_text())}
    missing = sorted(f"{path.relative_to(ROOT)}: {name}" for path, name in named if name != "README.md" and not (DOCS / name).exists())
    assert not missing, missing
    assert any(name == "algorithms.md" for _, name in named)  # the walk finds what the maths cites


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_readme_and_the_docs_resolves():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                if anchor not in {_anchor(heading) for heading in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
