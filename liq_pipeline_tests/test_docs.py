"""The documentation lives in the repository: README.md and docs/ name only files a clone has."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
# A relative path that climbs out of the folder it is written in: ../x, ../../x.
CLIMBING = re.compile(r"(?<![\w.])(?:\.\./)+[\w./-]*")
# Backticked paths that start in one of the repository's own folders or name a top-level file.
TOP_LEVEL = ("liq_pipeline/", "liq_pipeline_tests/", "bench/", "docs/", "deploy/", ".ci/")
BACKTICKED = re.compile(r"`([^`\s]+)`")


def repo_paths_in(text: str, doc: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for every link target and every backticked repository path."""
    found = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        found.append((target, (doc.parent / target.split("#")[0]).resolve()))
    for token in BACKTICKED.findall(text):
        path = token.split("::")[0].rstrip(".,:;")
        if path.startswith(TOP_LEVEL) or path in {"dagster.yaml", "workspace.yaml"}:
            found.append((token, (REPO / path).resolve()))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_docs_point_only_at_files_in_the_repository(doc: Path):
    text = doc.read_text()
    outside = [
        written
        for written in CLIMBING.findall(text)
        if not (doc.parent / written).resolve().is_relative_to(REPO)
    ]
    assert outside == [], f"{doc.name} points outside the repository"
    missing = [
        written
        for written, path in repo_paths_in(text, doc)
        if not path.is_relative_to(REPO) or not path.exists()
    ]
    assert missing == [], f"{doc.name} names paths a clone does not have"


def test_the_path_checks_catch_what_a_clone_would_miss():
    # The checks themselves: a climbing path, a dead link and a dead backticked path are found.
    text = "See `../shared/CONTRACT.md`, [the spec](spec/missing.md) and `bench/nothing.py`."
    assert CLIMBING.findall(text) == ["../shared/CONTRACT.md"]
    doc = REPO / "README.md"
    written = [w for w, path in repo_paths_in(text, doc) if not path.exists()]
    assert written == ["spec/missing.md", "bench/nothing.py"]


def test_no_source_or_config_file_refers_to_a_folder_outside_the_repository():
    files = [
        path
        for folder in ("liq_pipeline", "liq_pipeline_tests", "bench", "deploy", ".ci")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in {".py", ".yaml", ".toml", ".md", ""}
    ]
    files += [REPO / name for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml")]
    assert len(files) > 100
    offenders = [
        str(path.relative_to(REPO))
        for path in files
        if path.name != "test_docs.py" and "../shared" in path.read_text(errors="replace")
    ]
    assert offenders == []
