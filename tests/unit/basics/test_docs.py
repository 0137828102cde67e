"""What people read stays inside the repository and stays true.

A user's clone has README.md, docs/ and the code, and nothing beside them: every Markdown link and
every repository path written in README.md or docs/*.md must lead to a file of the clone; the code's
comments (and the tests') must name only docs/ pages that exist, and none of the notes beside the
clone; docs/configuration.md must cover every template parameter and every variable the functions
read.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import vpsbackup
from tests.conftest import ROOT, load_template
from vpsbackup.settings import SharedSettings, env_name

DOCS = ROOT / "docs"
USER_DOCS = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# Code whose comments and docstrings people read (tests may read data beside the clone: not here).
CODE_ROOTS = [ROOT / "layers", ROOT / "functions", ROOT / "devtools"]
CODE_FILES = [ROOT / "template.yaml", ROOT / "Makefile", ROOT / "pyproject.toml"]
CODE_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".txt", ".json", ".md", ""}

# The team's working notes live beside the repository, not in it: nothing a user reads may name them.
OUTSIDE_REFERENCES = re.compile(
    r"\.\./shared|\bSPEC\.md|\bSPEC\s*§|\bSPEC section|TOOLING-NOTES|vps-backups-api\.md|STYLE\.md"
)
# Top-level entries of the repository that paths in the docs start with (plus whatever else is there).
ROOT_ENTRIES = {"docs", "events", "functions", "layers", "devtools", "tests", "template.yaml", "Makefile", "README.md"}
# Paths inside the shared package are often written from its root (`prune/plan.py`).
PACKAGE = ROOT / "layers" / "shared" / "vpsbackup"
PACKAGE_ROOMS = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
MODULE_REFERENCE = re.compile(r"^vpsbackup(?:\.[A-Za-z_]\w*)+$")
ALLOWED_SCHEMES = ("https://", "http://", "mailto:")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text without its fenced code blocks (links and code spans live in the prose)."""
    return FENCE.sub("", text)


def _fenced(text: str) -> list[str]:
    return [match.group(0) for match in FENCE.finditer(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for heading in HEADING.findall(_prose(_text(path))):
        slug = _slug(heading)
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def _links(path: Path) -> list[str]:
    prose = _prose(_text(path))
    prose_without_code = CODE_SPAN.sub("", prose)
    return [
        *INLINE_LINK.findall(prose_without_code),
        *REFERENCE_LINK.findall(prose_without_code),
        *HTML_LINK.findall(prose_without_code),
    ]


def _inside(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT.resolve())
    except ValueError:
        return False
    return True


def _root_entries() -> set[str]:
    present = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"}
    return (ROOT_ENTRIES | present) - {".venv", ".venv-compat", ".aws-sam"}


def _path_candidates(text: str) -> Iterator[str]:
    """Every token of the code spans and code blocks that is written like a repository path."""
    chunks = [*CODE_SPAN.findall(_prose(text)), *_fenced(text)]
    entries = _root_entries()
    for chunk in chunks:
        for raw in re.split(r"[\s=|]+", chunk):
            token = raw.strip("\"'(),;").rstrip(".:")
            if not token or "://" in token or token.startswith(("$", "-")):
                continue
            first = token.split("/", 1)[0]
            if token.startswith("../") or (first in entries and ("/" in token or first == token)):
                yield token
            elif first in PACKAGE_ROOMS and "/" in token and token.split("/", 1)[1]:
                yield "layers/shared/vpsbackup/" + token


def _exists(path_text: str) -> bool:
    """A repository path exists; ``<name>`` placeholders and ``*`` match at least one entry."""
    pattern = re.sub(r"<[^>]+>", "*", path_text.split("#", 1)[0].rstrip("/"))
    if not _inside(ROOT / pattern.replace("*", "x")):
        return False
    if "*" in pattern:
        return any(_inside(match) for match in ROOT.glob(pattern))
    return (ROOT / pattern).exists()


def _module_defines(dotted: str) -> bool:
    """``vpsbackup.prune.compact`` or ``vpsbackup.prune.compact.plan_fleet`` names a module (and a name in it)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = PACKAGE.parent.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[cut:]
            if not rest:
                return True
            if len(rest) > 2:
                return False
            source = _text(module)
            return all(re.search(rf"^\s*(?:def|class)\s+{name}\b|^\s*{name}\s*[:=]", source, re.M) for name in rest)
    return False


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_user_doc_points_at_the_notes_beside_the_repository(doc: Path) -> None:
    # Given a page people read, When it is searched for the team's notes, Then none is named
    found = sorted({m.group(0) for m in OUTSIDE_REFERENCES.finditer(_text(doc))})
    assert not found, f"{doc.name} names files outside the repository: {found}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_markdown_link_leads_to_a_file_of_the_repository(doc: Path) -> None:
    problems = []
    for target in _links(doc):
        if target.startswith(ALLOWED_SCHEMES):
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            problems.append(f"{target}: a link of another kind than https or mailto")
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (ROOT / path_part.lstrip("/")) if path_part.startswith("/") else (doc.parent / path_part)
        if not path_part:
            resolved = doc
        if not _inside(resolved):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{target}: {resolved.name} has no heading #{anchor}")
    assert not problems, f"{doc.name}: " + "; ".join(problems)


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_in_backticks_exists(doc: Path) -> None:
    text = _text(doc)
    missing = sorted({p for p in _path_candidates(text) if not _exists(p)})
    assert not missing, f"{doc.name} names paths that are not in the repository: {missing}"
    modules = {s for s in CODE_SPAN.findall(_prose(text)) if MODULE_REFERENCE.match(s)}
    unknown = sorted(m for m in modules if not _module_defines(m))
    assert not unknown, f"{doc.name} names modules or functions that do not exist: {unknown}"


def _code_files() -> Iterator[Path]:
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in CODE_SUFFIXES:
                yield path
    yield from (p for p in CODE_FILES if p.is_file())


def test_every_docs_page_the_code_names_exists() -> None:
    # Given the code's comments and docstrings, When they name a docs/ page, Then that page exists
    named: dict[str, set[str]] = {}
    for path in [*_code_files(), *_test_files()]:
        for page in re.findall(r"\bdocs/[\w.-]+\.md\b", _text(path)):
            named.setdefault(page, set()).add(str(path.relative_to(ROOT)))
    assert named, "no code comment names a docs/ page: the scan is broken"
    missing = {page: sorted(where) for page, where in named.items() if not (ROOT / page).is_file()}
    assert not missing, f"pages named in code comments but absent: {missing}"


def _test_files() -> Iterator[Path]:
    """The tests, but this one (it spells the names it looks for)."""
    return (p for p in sorted((ROOT / "tests").rglob("*.py")) if p.resolve() != Path(__file__).resolve())


def test_the_code_does_not_point_at_the_notes_beside_the_repository() -> None:
    # The tests' data lives in the repository (tests/unit/prune/golden/): nothing beside the clone is read.
    found = {
        str(path.relative_to(ROOT)): sorted({m.group(0) for m in OUTSIDE_REFERENCES.finditer(_text(path))})
        for path in [*_code_files(), *_test_files()]
    }
    assert not {k: v for k, v in found.items() if v}


def _settings_classes() -> Iterator[type[BaseModel]]:
    yield SharedSettings
    for info in pkgutil.walk_packages(vpsbackup.__path__, prefix="vpsbackup."):
        if info.name.rsplit(".", 1)[-1] != "settings":
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, SharedSettings) and cls.__module__ == module.__name__:
                yield cls


def _environment_variables(template: dict[str, Any]) -> set[str]:
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def test_configuration_documents_every_parameter_and_variable() -> None:
    # Given the template's parameters, the functions' environment and every settings field
    template = load_template()
    variables = {env_name(field) for cls in _settings_classes() for field in cls.model_fields}
    assert {"RETENTION_POLICY", "RESTORE_MODE", "SERVER_GROUPS", "VPS_API_TOKEN_SECRET"} <= variables
    wanted = set(template["Parameters"]) | variables | _environment_variables(template)
    # When docs/configuration.md is read, Then each one is named in it, in code font
    documented = set(CODE_SPAN.findall(_text(DOCS / "configuration.md")))
    assert not sorted(wanted - documented), f"undocumented in docs/configuration.md: {sorted(wanted - documented)}"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", _text(ROOT / "Makefile"), re.M))


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_the_docs_name_exists(doc: Path) -> None:
    text = _text(doc)
    code = " ".join([*CODE_SPAN.findall(_prose(text)), *_fenced(text)])
    named = set(re.findall(r"(?<![\w-])make\s+([a-z][\w-]*)", code))
    assert not sorted(named - _make_targets()), f"{doc.name}: no such make target: {sorted(named - _make_targets())}"


def test_make_help_lists_every_target_the_readme_names() -> None:
    makefile = _text(ROOT / "Makefile")
    recipe = makefile.split("\nhelp:\n", 1)[1].split("\n\n", 1)[0]
    helped = set(re.findall(r"(?<![\w-])make\s+([a-z][\w-]*)", recipe))
    named = set(re.findall(r"(?<![\w-])make\s+([a-z][\w-]*)", _text(ROOT / "README.md")))
    assert not sorted(named - helped), f"make help does not list: {sorted(named - helped)}"


def test_the_readme_opens_with_the_demo_and_the_tests() -> None:
    first_screen = "\n".join(_text(ROOT / "README.md").splitlines()[:30])
    assert "make demo" in first_screen
    assert "make test" in first_screen


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    # The helpers themselves: a path outside, a missing file and a bad anchor are all caught
    assert not _exists("../shared/SPEC.md")
    assert not _exists("docs/no-such-page.md")
    assert _exists("events/<file>.json")
    assert not _exists("events/<file>.yaml")
    assert OUTSIDE_REFERENCES.search("see SPEC §5") is not None
    assert _slug("What `sam build` makes of the layer") == "what-sam-build-makes-of-the-layer"
    assert _module_defines("vpsbackup.prune.compact.plan_fleet")
    assert not _module_defines("vpsbackup.prune.compact.no_such_function")
    assert not _module_defines("vpsbackup.pruning")
    page = tmp_path / "page.md"
    page.write_text("[a](../../outside.md) [b](#nowhere)\n`docs/none.md`\n", encoding="utf-8")
    assert _links(page) == ["../../outside.md", "#nowhere"]
    assert list(_path_candidates(_text(page))) == ["docs/none.md"]
