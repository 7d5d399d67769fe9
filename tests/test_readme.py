"""The README is a front door and the manual in docs/ stays true to the tree: the README is short,
its first screen holds the two commands that work on a fresh machine (the test command being the
one CI runs) and a screenshot, no link, anchor or `stmgt` path in the documents points at
something that is not there, and docs/reliability.md's count of bad-input cases is the real one."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOCS]
LINKED = [*DOCUMENTS, ROOT / "benchmarks" / "RESULTS.md"]   # RESULTS.md links back into docs/
MAX_LINES, FIRST_SCREEN = 150, 40

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
PACKAGE_PATH = re.compile(r"(?<![\w/.-])stmgt/[\w/]*\w\.py\b")
PACKAGE_FOLDER = re.compile(r"(?<![\w/.-])stmgt/(?:\w+/)+")
MODULE_NAME = re.compile(r"(?<![\w/.-])stmgt(?:\.[a-z_]\w*)+")
PLACEHOLDER = re.compile(r"/[A-Z]+(?:/|\.py$)")         # stmgt/data/importers/NAME.py: a name to choose


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose(text: str) -> str:
    """The text without its fenced code blocks (a `#` there is a shell comment, not a heading)."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """GitHub's ids for the headings of a Markdown file."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", prose(path.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def ci_test_command() -> str:
    """The command CI runs: the last command line of .ci/run."""
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd "))][-1]


def test_readme_is_at_most_150_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_first_screen_has_the_two_commands_and_a_screenshot():
    first = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN])
    commands = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", first, re.S)
                for line in block.splitlines()]
    for command in ("bash scripts/dashboard.sh", ci_test_command()):
        assert command in commands, f"{command!r} is not a command in the README's first {FIRST_SCREEN} lines"
        assert (ROOT / command.split()[1]).is_file()
    images = IMAGE.findall(first)
    assert images, f"no image in the README's first {FIRST_SCREEN} lines"
    for image in images:
        assert (ROOT / image).is_file(), image
        assert (ROOT / image).stat().st_size < 400_000, f"{image} is over 400 KB"


@pytest.mark.parametrize("document", LINKED, ids=rel)
def test_relative_links_point_at_files_and_headings_that_exist(document: Path):
    broken = []
    for target in LINK.findall(prose(document.read_text())):
        if re.match(r"[a-z]+:", target):          # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {rel(file)}")
    assert not broken, f"{rel(document)}: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=rel)
def test_package_paths_and_modules_named_exist(document: Path):
    text = document.read_text()
    paths = [path for path in PACKAGE_PATH.findall(text) if not PLACEHOLDER.search(path)]
    missing = [path for path in paths if not (ROOT / path).is_file()]
    missing += [path for path in PACKAGE_FOLDER.findall(text) if not (ROOT / path).is_dir()]
    for name in MODULE_NAME.findall(text):
        parts = name.split(".")
        if parts[-1] == "toml":                   # stmgt.toml, the server's settings file
            continue
        module = ROOT / "stmgt"
        for i, part in enumerate(parts[1:], start=1):
            if (module / part).is_dir():
                module = module / part
            elif (module / f"{part}.py").is_file():
                source = (module / f"{part}.py").read_text()
                attribute = parts[i + 1] if i + 1 < len(parts) else None
                if attribute and not re.search(rf"^\s*(def |class )?{attribute}\b", source, re.M):
                    missing.append(name)
                break
            else:
                missing.append(name)
                break
    assert not missing, f"{rel(document)} names what is not in the package: {missing}"


@pytest.mark.slow
def test_reliability_page_counts_the_bad_input_cases_there_are():
    claimed = re.search(r"`tests/test_bad_inputs.py`: \*\*(\d+) cases\*\*", (ROOT / "docs/reliability.md").read_text())
    assert claimed, "docs/reliability.md no longer says how many cases tests/test_bad_inputs.py holds"
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_bad_inputs.py"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    count = re.search(r"(\d+) tests? collected", collected.stdout)
    assert count, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert int(claimed.group(1)) == int(count.group(1)), "update the case count in docs/reliability.md"
