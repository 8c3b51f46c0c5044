"""The documentation cannot rot as the code moves: every relative link and `#anchor` in README.md and
docs/*.md resolves (the file exists; the anchor is a heading's slug under GitHub's rules), every page of docs/
is in its index, every repository path the prose names in backticks (`reconciler/…`, `tests/…`) exists, and
so does every folder and module the README's layout picture names. Plain file reads, no tools."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PATH_ROOTS = (
    "reconciler/",
    "stacks/",
    "tools/",
    "bench/",
    "examples/",
    "config/",
    "crds/",
    "devenv/",
    "tests/",
)
# A path segment holding one of these stands for many paths (`tools/<name>/go.mod`, `examples/**/*.yaml`): the
# segments before it must exist.
PLACEHOLDER = re.compile(r"[<>…*{}|]")

FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
# A line of the README's layout: a folder or files at the top (or two spaces in, inside the folder above),
# then what they hold, which may name subfolders (`pulumi/`) and modules (`routing.py`) of that entry.
LAYOUT_ENTRY = re.compile(r"^(?P<indent> {0,2})(?P<names>\S.*?)(?: {2,}(?P<about>.*))?$")
CONTINUATION = re.compile(r"^ {4,}(?P<about>\S.*)$")
NAMED_IN_PASSING = re.compile(r"(?<![\w/.-])([\w-]+/|[\w-]+\.py)(?![\w/])")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks: a `# comment` in a shell block is no heading, a path in an
    example output no claim."""
    return FENCED_BLOCK.sub("", markdown)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped, spaces as
    hyphens."""
    text = CODE_SPAN.sub(lambda match: match.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, … as on GitHub."""
    seen: Counter[str] = Counter()
    result = set()
    for heading in HEADING.findall(prose(markdown)):
        slug = github_slug(heading)
        result.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return result


def link_problems(document: Path) -> list[str]:
    problems = []
    for target in LINK.findall(CODE_SPAN.sub("", prose(document.read_text()))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            problems.append(f"{target}: {path_part} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{target}: {linked.name} has no heading with the anchor #{anchor}")
    return problems


def named_paths(markdown: str) -> set[str]:
    """Every word of an inline code span that starts like a path of this repository."""
    words = (word for span in CODE_SPAN.findall(prose(markdown)) for word in span[1].split())
    return {word.split("::")[0].rstrip(".,:;)") for word in words if word.startswith(PATH_ROOTS)}


def path_problems(document: Path, root: Path) -> list[str]:
    problems = []
    for named in sorted(named_paths(document.read_text())):
        segments = named.split("/")
        literal = segments[: _first_placeholder(segments)]
        if not (root / "/".join(literal)).exists():
            problems.append(f"`{named}`: {'/'.join(literal)} does not exist")
    return problems


def _first_placeholder(segments: list[str]) -> int:
    return next(
        (index for index, segment in enumerate(segments) if PLACEHOLDER.search(segment)), len(segments)
    )


def layout_paths(markdown: str) -> set[str]:
    """Every path the layout block (the fenced block that starts with `reconciler/`) names."""
    block = next(
        match.group(0) for match in FENCED_BLOCK.finditer(markdown) if "\nreconciler/\n" in match.group(0)
    )
    paths: set[str] = set()
    folder = entry = ""
    for line in block.splitlines()[1:-1]:
        continued = CONTINUATION.match(line)
        about = continued["about"] if continued else ""
        if not continued:
            parsed = LAYOUT_ENTRY.match(line)
            assert parsed, f"not a layout line: {line!r}"
            names = [name.strip() for name in parsed["names"].split(",")]
            folder = folder if parsed["indent"] else names[0]
            entries = [f"{folder}{name}" if parsed["indent"] else name for name in names]
            paths.update(entries)
            entry, about = entries[-1], parsed["about"] or ""
        paths.update(f"{entry}{name}" for name in NAMED_IN_PASSING.findall(about) if entry.endswith("/"))
    return paths


def relative(document: Path) -> str:
    return str(document.relative_to(ROOT))


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_relative_link_and_anchor_resolves(document: Path) -> None:
    assert link_problems(document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_repository_path_named_exists(document: Path) -> None:
    assert path_problems(document, ROOT) == []


def test_every_path_of_the_readme_layout_exists() -> None:
    missing = sorted(
        path for path in layout_paths((ROOT / "README.md").read_text()) if not (ROOT / path).exists()
    )
    assert missing == []


def test_the_layout_names_folders_inside_their_parent_and_modules_in_passing() -> None:
    layout = (
        "```\nreconciler/\n  core/     pure\n  cli.py, plugin.py   entry points\nstacks/   the program;\n"
    )
    layout += "          routers/ behind a seam (routing.py)\n```\n"
    assert layout_paths(layout) == {
        "reconciler/",
        "reconciler/core/",
        "reconciler/cli.py",
        "reconciler/plugin.py",
        "stacks/",
        "stacks/routers/",
        "stacks/routing.py",
    }


def test_the_docs_index_links_every_page() -> None:
    index = ROOT / "docs" / "README.md"
    linked = {target.partition("#")[0] for target in LINK.findall(index.read_text())}
    pages = {page.name for page in DOCUMENTS if page.parent == index.parent and page != index}
    assert pages <= linked


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        pytest.param(
            "Control a rollout: `kubectl canaryapp`", "control-a-rollout-kubectl-canaryapp", id="code"
        ),
        pytest.param("Pulumi's Python language host", "pulumis-python-language-host", id="apostrophe"),
        pytest.param("How long `make test` takes", "how-long-make-test-takes", id="code-inside"),
        pytest.param("Requests: annotations", "requests-annotations", id="colon"),
        pytest.param("S3 and S3-compatible stores", "s3-and-s3-compatible-stores", id="hyphen"),
        pytest.param("See [the index](docs/README.md)", "see-the-index", id="link"),
        pytest.param(
            "What the status, Events, metrics and logs show", "what-the-status-events-metrics-and-logs-show"
        ),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# Tests\n\n## Tests\n\n```sh\n# Tests\n```\n") == {"tests", "tests-1"}


def test_broken_links_unknown_anchors_and_missing_paths_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A section\n")
    document = tmp_path / "docs" / "page.md"
    document.write_text(
        "# Page\n\n[ok](other.md#a-section) [self](#page) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [stale](other.md#no-such-section) [stale here](#nothing)\n\n"
        "`tools/<name>/go.mod` and `tools/build.sh debian-base` exist in part, `reconciler/gone.py` not.\n"
        "```sh\nbench/only-in-a-block.py\n```\n"
    )
    assert link_problems(document) == [
        "missing.md: missing.md does not exist",
        "other.md#no-such-section: other.md has no heading with the anchor #no-such-section",
        "#nothing: page.md has no heading with the anchor #nothing",
    ]
    assert path_problems(document, tmp_path) == [
        "`reconciler/gone.py`: reconciler/gone.py does not exist",
        "`tools/build.sh`: tools/build.sh does not exist",
    ]
