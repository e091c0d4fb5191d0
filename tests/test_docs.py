"""The documentation is true: docstring examples, README.md and docs/*.md.

* The Examples blocks in docstrings run and print what they claim (doctest).
* Every ```python block in README.md and docs/*.md parses.  Which blocks run:

  - a block that uses a name it neither imports nor assigns (``V``, ``model``, ...) is a
    *fragment* of the page's reference text: it is only parsed.  README.md has no
    fragments: its blocks run as pasted.
  - a block preceded by ``<!-- not run: reason -->`` is only parsed (it needs a
    cluster, a Spark Connect server, ...); the reason must be given.
  - every other block runs, in a fresh temporary folder:
    * a block that mentions ``SparkSession`` runs in this process on the shared
      ``spark`` session (its ``getOrCreate()`` returns that session).  What Spark writes
      goes to the JVM's working folder, not the block's: such blocks save to a
      ``tempfile.mkdtemp()`` folder;
    * any other block runs in a fresh Python subprocess (no Spark session), with a
      timeout;
    * a block that reads the real data (mentions ``SPARKNMF_DATA`` or imports a loader
      of ``sparknmf.datasets`` that reads it) is marked ``data`` and skipped without it.

* Every relative link and image in README.md and docs/*.md points to a file of the
  repository, and every ``#anchor`` to a heading of the page it names.
* What the ```python blocks import from sparknmf exists (fragments too).
* Every ```toml block parses with tomllib.  ```bash and ```text blocks are not run.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]

README_MAX_LINES = 250
BLOCK_TIMEOUT = 180  # seconds, per block run in a subprocess
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
# loaders of sparknmf.datasets that read SPARKNMF_DATA (the others generate data or take a path)
DATA_LOADERS = {"data_dir", "load_associated_press", "load_iris", "load_movielens_100k", "load_movielens_items",
                "load_movielens_users"}


# ---------------------------------------------------------------------------------------------- docstrings
@pytest.mark.parametrize("name", ["sparknmf.decomposition.estimator", "sparknmf.plots.maps",
                                  "sparknmf.analysis.clustering", "sparknmf.analysis.estimator"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0



# ---------------------------------------------------------------------------------------------- code blocks
@dataclass(frozen=True)
class Block:
    path: Path
    line: int          # line of the opening fence, 1-based
    lang: str
    source: str
    not_run: str | None  # the reason given in a <!-- not run: ... --> comment, or None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (``` or ~~~ fences, indented ones too)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.group(1), opening.group(2), opening.group(3).lower()
        start, body, i = i, [], i + 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: code block never closed")
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        reason = NOT_RUN.search(previous)
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", reason.group(1) if reason else None))
        i += 1
    return blocks


def _names(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names read, names bound) anywhere inside ``node``."""
    used, bound = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (used if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in sub.names)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(sub.name)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            bound.add(sub.name)
    return used, bound


def free_names(tree: ast.Module) -> set[str]:
    """Names a block reads before any of its statements binds them (``model.save(...)`` with no ``model = ...``
    above it).  Statement by statement: an assignment's value is read before its targets are bound; names
    bound inside a statement (loop targets, comprehension variables, arguments) count for that statement."""
    bound, free = set(dir(builtins)), set()
    for statement in tree.body:
        if isinstance(statement, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            used, inner = _names(statement.value) if statement.value is not None else (set(), set())
            if isinstance(statement, ast.AugAssign):
                used |= _names(statement.target)[1]  # x += 1 reads x
            for target in targets:  # subscripts and attributes read their object
                target_used, _ = _names(target)
                used |= target_used
            free |= used - bound - inner
            for target in targets:
                bound |= _names(target)[1]
        else:
            used, inner = _names(statement)
            free |= used - bound - inner
            bound |= inner
    return free


def needs_data(block: Block, tree: ast.AST) -> bool:
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "sparknmf.datasets" for alias in node.names}
    return "SPARKNMF_DATA" in block.source or bool(imported & DATA_LOADERS)


ALL_BLOCKS = [block for path in DOCUMENTS for block in fenced_blocks(path)]
PYTHON = [block for block in ALL_BLOCKS if block.lang in ("python", "py")]


def _runnable():
    params = []
    for block in PYTHON:
        try:
            tree = ast.parse(block.source)
        except SyntaxError:
            continue  # test_python_block_parses says so
        if block.not_run is not None or free_names(tree):
            continue
        spark = "SparkSession" in block.source
        marks = [pytest.mark.spark] if spark else []
        if needs_data(block, tree):
            marks.append(pytest.mark.data)
        params.append(pytest.param(block, spark, needs_data(block, tree), id=block.where, marks=marks))
    return params


RUNNABLE = _runnable()


def test_the_documents_exist():
    assert README.is_file() and PAGES, "README.md and docs/*.md"
    assert PYTHON and RUNNABLE, "no ```python block found, or none that runs"


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_parses(block):
    try:
        ast.parse(block.source)
    except SyntaxError as err:
        pytest.fail(f"{block.where}: line {err.lineno} of the block does not parse: {err.msg}")
    if block.not_run is not None:
        assert block.not_run, f"{block.where}: say why the block is not run: <!-- not run: reason -->"


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_imports_exist(block):
    """What a block imports from sparknmf exists, fragments and not-run blocks included (modules move)."""
    missing = []
    for node in ast.walk(ast.parse(block.source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sparknmf":
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{alias.name}" for alias in node.names if not hasattr(module, alias.name)
                        and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sparknmf" and importlib.util.find_spec(alias.name) is None:
                    missing.append(alias.name)
    assert not missing, f"{block.where} imports what does not exist: {missing}"


@pytest.mark.parametrize("block", [b for b in PYTHON if b.path == README], ids=lambda b: b.where)
def test_readme_blocks_run_as_pasted(block):
    """README's blocks import every name they use (define ``spark`` too), so that they can be pasted."""
    names = free_names(ast.parse(block.source))
    assert not names, f"{block.where}: the block uses {sorted(names)} without importing or defining them"


@pytest.mark.parametrize(("block", "uses_spark", "uses_data"), RUNNABLE)
def test_python_block_runs(block, uses_spark, uses_data, request, tmp_path, monkeypatch):
    if uses_data:  # skips, saying why, when SPARKNMF_DATA is not a folder; absolute, as the block runs elsewhere
        monkeypatch.setenv("SPARKNMF_DATA", str(request.getfixturevalue("data_dir").resolve()))
    code = compile(block.source, block.where, "exec")
    if uses_spark:
        request.getfixturevalue("spark")  # the shared session: the block's getOrCreate() returns it
        monkeypatch.chdir(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, {"__name__": "__docs__"})
        return
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-c", block.source], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT} s")
    tail = "\n".join(done.stderr.splitlines()[-25:])
    assert done.returncode == 0, f"{block.where} failed (exit code {done.returncode}):\n{tail}"


TOML = [block for block in ALL_BLOCKS if block.lang == "toml"]


@pytest.mark.parametrize("block", TOML, ids=[b.where for b in TOML])
def test_toml_block_parses(block):
    try:
        tomllib.loads(block.source)
    except tomllib.TOMLDecodeError as err:
        pytest.fail(f"{block.where}: {err}")


# ---------------------------------------------------------------------------------------------- links
def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^(\s*)(`{3,}|~{3,}).*?^\1\2[`~]*\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"(`+).+?\1", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
                  r"|^\s*\[[^\]]+\]:\s*(\S+)"
                  r"|<(?:img|a)\s[^>]*?(?:src|href)=\"([^\"]+)\"", re.M)


def links(path: Path) -> list[str]:
    return [next(group for group in match.groups() if group)
            for match in LINK.finditer(prose(path.read_text(encoding="utf-8")))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_images_resolve(path):
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if file and (ROOT not in resolved.parents or not resolved.exists()):
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


# ---------------------------------------------------------------------------------------------- layout
def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md is over {README_MAX_LINES} lines: move text to docs/"
    first_screen = "\n".join(text.splitlines()[:40])
    for command in ("pip install", "python -m sparknmf.demo", "python -m pytest"):
        assert command in first_screen, f"README.md's first screen lacks {command!r}"
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    orphans = [p.name for p in PAGES if p.resolve() not in linked]
    assert not orphans, f"README.md's table of contents does not link {orphans}"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^python -m pytest$", ci, re.M), ".ci/run no longer runs `python -m pytest`: update README.md"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_page_starts_with_what_it_covers(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("# "), f"{path.name}: the first line is the title (# ...)"
    summary = next((line for line in lines[1:] if line.strip()), "")
    assert summary and not summary.startswith(("#", "```", "|", "!", "-", "<")), \
        f"{path.name}: the title is followed by a sentence saying what the page covers"
