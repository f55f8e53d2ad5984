"""The README and the docs/ pages: their shape, their links, their commands, their examples.

Examples in docs/*.md run against a live meter: every mbpoll command line of a bash
block and every python block that names the documented port 5020, one meter per
block, with 5020 replaced by the meter's port. A block runs against an electric
meter started with no options unless the line before it is an HTML comment naming
them (`<!-- meter: --unit-ids 1-32 -->`); `<!-- not run: reason -->` there leaves a
block out. docs/development.md describes these conventions.
"""
from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
from docopt import docopt

from meter_simulator.app import options
from meter_simulator.ops import state
from support import METER_TYPE_CODES, ROOT, MeterProcess, mbpoll_values, meter_count, run_mbpoll, run_python

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *PAGES]
DOC_PORT = 5020
MAX_README_LINES = 300
FRESH_MACHINE = ("python3 -m pip install . && python3 scripts/run_meter.py --type water",
                 "python3 -m pip install tox && python3 -m tox")
NOTE = re.compile(r"^<!--\s*(.*?)\s*-->$")
MAX_NOT_RUN = 3  # blocks left out of the runs: keep them few
HOST = "127.0.0.1"


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- reading Markdown -----------------------------------------------------------------------

class Block(NamedTuple):
    """A fenced code block: its language, its text, the line of its fence, the note before it."""

    path: Path
    language: str
    code: str
    line: int
    note: str | None

    @property
    def name(self) -> str:
        return f"{rel(self.path)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].startswith("```"):
            start, language = index, lines[index][3:].strip()
            index += 1
            while not lines[index].startswith("```"):
                index += 1
            note = NOTE.match(lines[start - 1].strip()) if start > 0 else None
            blocks.append(Block(path, language, "\n".join(lines[start + 1:index]) + "\n", start + 1,
                                note[1] if note else None))
        index += 1
    return blocks


def prose_lines(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    kept, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def inline_code(path: Path) -> list[str]:
    return [match[2].strip() for line in prose_lines(path) for match in INLINE_CODE.finditer(line)]


def headings(path: Path) -> list[str]:
    return [match[1] for line in prose_lines(path)
            if (match := re.fullmatch(r"#{1,6}\s+(.*?)\s*#*\s*", line))]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation but '-' and '_' removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2 and so on, as GitHub numbers them."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(path):
        anchor = github_anchor(heading)
        result.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return result


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")


def links(path: Path) -> list[str]:
    """The targets of the Markdown links [text](target) outside code."""
    return [match[1] for line in prose_lines(path)
            for match in LINK.finditer(INLINE_CODE.sub("", line))]


# --- the README and the pages: shape ---------------------------------------------------------

def test_the_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_fresh_machine_commands_are_in_the_readmes_first_40_lines():
    first = README.read_text(encoding="utf-8").splitlines()[:40]
    for command in FRESH_MACHINE:
        assert command in first, f"{command!r} on a line of its own in README.md's first 40 lines"


def test_there_are_docs_pages():
    assert {"README.md", "registers.md", "fleets.md", "state.md", "service.md", "hardening.md",
            "performance.md", "design.md", "development.md"} <= {page.name for page in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_page_starts_with_a_title_and_a_paragraph(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[0][2:].strip(), f"{rel(page)}: first line a '# ' title"
    body = [line for line in lines[1:] if line.strip()]
    first = body[0] if body else ""
    assert lines[1] == "", f"{rel(page)}: a blank line after the title"
    assert first and not re.match(r"\s*(#|[-*+] |\d+[.)] |```|~~~|\||>|<|    )", first), (
        f"{rel(page)}: the title is followed by a paragraph, not {first!r}")


# --- links ----------------------------------------------------------------------------------

@pytest.mark.parametrize("heading, anchor", [
    ("Many meters in one process", "many-meters-in-one-process"),
    ("Hostile clients, limits and access control", "hostile-clients-limits-and-access-control"),
    ("Gateway mode (unit ids)", "gateway-mode-unit-ids"),
    ("pymodbus 3.x", "pymodbus-3x"),
    ("FC 0x2B / MEI 0x0E", "fc-0x2b--mei-0x0e"),
    ("`--state-file` and saving_it", "--state-file-and-saving_it"),
])
def test_github_anchor_rules(heading, anchor):
    assert github_anchor(heading) == anchor


def test_a_repeated_heading_gets_a_number(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Notes\n\n```bash\n# not a heading\n```\n\n## Notes\n", encoding="utf-8")
    assert anchors(page) == {"title", "notes", "notes-1"}


def broken_link(path: Path, target: str) -> str | None:
    """Why a link's target does not resolve, or None when it does."""
    parts = urlsplit(target)
    if parts.scheme:
        if parts.scheme not in ("http", "https") or "." not in parts.netloc or " " in target:
            return "an absolute link must be a well-formed http(s) address"
        return None
    link_path, _, anchor = target.partition("#")
    if not link_path and not anchor:
        return "an empty link"
    resolved = (path.parent / link_path).resolve() if link_path else path
    try:
        resolved.relative_to(ROOT)
    except ValueError:
        return "it leaves the repository"
    if not resolved.exists():
        return f"{link_path} does not exist"
    if anchor:
        if resolved.suffix != ".md" or not resolved.is_file():
            return f"#{anchor} points into {link_path}, which has no Markdown headings"
        if anchor not in anchors(resolved):
            return f"no heading of {rel(resolved)} has the anchor #{anchor}"
    return None


@pytest.mark.parametrize("path", MARKDOWN, ids=rel)
def test_every_link_resolves(path):
    problems = [f"{target}: {reason}" for target in links(path)
                if (reason := broken_link(path, target)) is not None]
    assert not problems, f"{rel(path)}: " + "; ".join(problems)


def test_the_link_check_sees_links_and_refuses_bad_ones(tmp_path):
    page = ROOT / "docs" / "page.md"  # as if it were a page, without writing one there
    assert links(README), "README.md has links"
    assert broken_link(page, "registers.md#register-map") is None
    assert broken_link(page, "../LICENSE") is None
    assert broken_link(page, "https://github.com/epsilonrt/mbpoll") is None
    assert broken_link(page, "registers.md#no-such-heading") is not None
    assert broken_link(page, "no-such-page.md") is not None
    assert broken_link(page, "../../outside.md") is not None
    assert broken_link(page, "https//example.com") is not None
    assert broken_link(page, "ftp://example.com/x") is not None


# --- command lines --------------------------------------------------------------------------

def command_lines() -> list[tuple[str, list[str]]]:
    """(where, tokens) of every command line in the README and the pages: the lines of the code
    blocks that start at the margin (a leading '$ ' prompt dropped) and the inline code, split as
    the shell would."""
    found = []
    for path in MARKDOWN:
        texts = [(block.name, line) for block in code_blocks(path)
                 if block.language in ("bash", "text", "") for line in block.code.splitlines()
                 if not line.startswith(" ")]  # an indented line is output (a usage text), not a command
        texts += [(rel(path), code) for code in inline_code(path)]
        for where, text in texts:
            text = text[2:] if text.startswith("$ ") else text
            try:
                tokens = shlex.split(text, comments=True)
            except ValueError:
                continue
            while tokens:  # each command of a list: a && b, a; b
                end = next((i for i, token in enumerate(tokens) if token in ("&&", "||", ";", "|")),
                           len(tokens))
                if tokens[:end]:
                    found.append((where, tokens[:end]))
                tokens = tokens[end + 1:]
    return found


PROGRAM = (["python3", "-m", "meter_simulator"], ["python3", "scripts/run_meter.py"],
           ["scripts/run_meter.py"], ["meter-simulator"])


def program_args(tokens: list[str]) -> list[str] | None:
    """The options of a command line that starts the program, else None. `[options]` stands
    for any options."""
    tokens = [token for token in tokens if token != "[options]"]
    for start in PROGRAM:
        args = tokens[len(start):]
        if tokens[:len(start)] == start and (not args or args[0].startswith("-")):
            return args
    return None


def script_args(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(script path, arguments) of a command line that runs another script of the checkout."""
    for index, token in enumerate(tokens[:2]):
        if token.startswith("scripts/") and token.endswith(".py") and token != "scripts/run_meter.py":
            if index == 0 or tokens[0] in ("python3", "python"):
                return token, tokens[index + 1:]
    return None


def test_command_lines_start_the_program_with_options_it_accepts():
    commands = [(where, args) for where, tokens in command_lines()
                if (args := program_args(tokens)) is not None]
    assert len(commands) >= 5
    for where, args in commands:
        try:
            options.parse_args(args)
        except options.UsageError as exc:
            pytest.fail(f"{where}: meter-simulator {shlex.join(args)}: {exc}")


def test_command_lines_run_scripts_that_exist_with_options_they_accept():
    commands = [(where, found) for where, tokens in command_lines()
                if (found := script_args(tokens)) is not None]
    assert {script for _, (script, _) in commands} >= {
        "scripts/bench/benchmark.py", "scripts/bench/soak.py", "scripts/bench/kill9_loss.py",
        "scripts/bench/save_latency.py"}
    for where, (script, args) in commands:
        path = ROOT / script
        assert path.is_file(), f"{where}: {script} does not exist"
        usage = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        try:
            docopt(usage, args)
        except SystemExit as exc:  # DocoptExit: options the script's usage does not take
            pytest.fail(f"{where}: {script} {shlex.join(args)}: {exc}")


def test_test_files_named_in_commands_exist():
    named = {token for _, tokens in command_lines() if tokens[:3] == ["python3", "-m", "pytest"]
             for token in tokens if token.startswith("tests/")}
    assert named, "the docs name test files to run"
    for name in named:
        assert (ROOT / name).is_file(), name


def test_the_site_pages_map_is_the_shipped_example():
    """docs/site.md shows docs/examples/hybrid-inverter.toml whole, but for its opening comments."""
    shipped = (ROOT / "docs" / "examples" / "hybrid-inverter.toml").read_text(encoding="utf-8")
    shown = [block.code for block in code_blocks(ROOT / "docs" / "site.md") if block.language == "toml"
             and block.code.startswith('name = "hybrid-inverter"')]
    assert shown == [shipped[shipped.index("name = "):]]


def test_the_state_file_example_is_a_state_file():
    examples = [block for block in code_blocks(ROOT / "docs" / "state.md") if block.language == "json"]
    assert examples
    for block in examples:
        meter_type = json.loads(block.code)["meter_type"]
        assert state.decode(block.code.encode("utf-8"), meter_type), block.name


# --- examples run against a live meter --------------------------------------------------------

def mbpoll_lines(block: Block) -> list[list[str]]:
    return [shlex.split(line, comments=True) for line in block.code.splitlines()
            if line.startswith("mbpoll ")]


def runnable(block: Block) -> bool:
    if block.language == "bash":
        return bool(mbpoll_lines(block))
    return block.language == "python" and str(DOC_PORT) in block.code


def doc_blocks() -> list[Block]:
    return [block for page in PAGES for block in code_blocks(page) if runnable(block)]


def meter_options(block: Block) -> list[str]:
    """The options of the meter a block runs against, from the note before it."""
    if block.note is None:
        return []
    assert block.note.startswith("meter:"), f"{block.name}: unknown note <!-- {block.note} -->"
    found = shlex.split(block.note[len("meter:"):])
    assert not {"-p", "--port", "-a", "--address"} & set(found), f"{block.name}: the test picks those"
    # a map file the page ships (docs/examples/...) is named from the checkout's root
    return [str(ROOT / option) if option.startswith("docs/") else option for option in found]


def blocks_to_run() -> list[Block]:
    return [block for block in doc_blocks() if not (block.note or "").startswith("not run:")]


def test_few_examples_are_left_out_and_each_says_why():
    left_out = [block for page in PAGES for block in code_blocks(page)
                if (block.note or "").startswith("not run:")]
    assert len(left_out) <= MAX_NOT_RUN, [block.name for block in left_out]
    for block in left_out:
        assert block.note[len("not run:"):].strip(), f"{block.name}: give the reason"


def test_notes_before_blocks_are_known():
    for page in PAGES:
        for block in code_blocks(page):
            if block.note is not None:
                assert block.note.startswith(("meter:", "not run:")), f"{block.name}: <!-- {block.note} -->"


def test_the_docs_have_examples_to_run():
    names = {block.path.name for block in blocks_to_run()}
    assert {"registers.md", "fleets.md", "hardening.md"} <= names, names
    assert {block.language for block in blocks_to_run()} == {"bash", "python"}


def live(code: str, port: int, count: int = 1) -> str:
    """The code with the documented ports (5020, and 5021 up for a --count fleet) made the meter's."""
    assert str(DOC_PORT) in code, "the example names the documented port"

    def replace(match: re.Match) -> str:
        offset = int(match[0]) - DOC_PORT
        return str(port + offset) if 0 <= offset < count else match[0]

    return re.sub(r"\b\d{4}\b", replace, code)


def test_live_replaces_the_documented_ports():
    assert live("-p 5020 x 5021 y 5022 z 1234", 25000, count=2) == "-p 25000 x 25001 y 5022 z 1234"


def meter_type(found: list[str]) -> str:
    for option in ("-t", "--type", "--meter-type"):
        if option in found:
            return found[found.index(option) + 1]
    return "electric"


MBPOLL_32_BIT = re.compile(r"^\[(\d+)\]:\s+(-?[\d.]+)\s*$", re.MULTILINE)


def check_mbpoll(block: Block, command: list[str], port: int, found: list[str]) -> None:
    args = shlex.split(live(shlex.join(command), port, meter_count(found)))[1:]
    done = run_mbpoll("-o", "5", *args)  # mbpoll's default 1 s timeout is tight on a loaded machine
    where = f"{block.name}: {shlex.join(command)}"
    assert done.returncode == 0, f"{where}: {done.stdout}{done.stderr}"
    writes = args[args.index(HOST) + 1:]
    if writes:
        return
    reference = int(args[args.index("-r") + 1]) if "-r" in args else 1
    count = int(args[args.index("-c") + 1]) if "-c" in args else 1
    table = args[args.index("-t") + 1] if "-t" in args else "4"
    step = 2 if table.endswith((":int", ":float")) else 1  # 32-bit values: two registers each
    values = mbpoll_values(done.stdout) if step == 1 else \
        {int(ref): float(value) for ref, value in MBPOLL_32_BIT.findall(done.stdout)}
    assert sorted(values) == list(range(reference, reference + step * count, step)), \
        f"{where}: {done.stdout}"
    if table in ("3", "4") and "--profile" not in found and reference <= 102 < reference + count:
        expected = METER_TYPE_CODES[meter_type(found)]
        assert values[102] == expected, f"{where}: register 101 is the meter type"


def check_python(block: Block, port: int, found: list[str], tmp_path: Path) -> None:
    code = live(block.code, port, meter_count(found))
    done = run_python(code, cwd=tmp_path)
    assert done.returncode == 0, f"{block.name}: {done.stderr}"
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, f"{block.name}: {done.stderr}"
    assert done.stdout.strip(), f"{block.name}: the example prints what it read"


@pytest.mark.parametrize("block", blocks_to_run(), ids=lambda block: block.name)
def test_docs_example_runs_against_a_live_meter(block, tmp_path):
    found = meter_options(block)
    with MeterProcess(*found, "--interval", "0.2", host=HOST) as meter:
        if block.language == "bash":
            for command in mbpoll_lines(block):
                check_mbpoll(block, command, meter.port, found)
        else:
            check_python(block, meter.port, found, tmp_path)
        status, _, err = meter.stop()
    assert status == 0, f"{block.name}: the meter ended with status {status}: {err}"


def test_the_readmes_picture_is_what_mbpoll_prints():
    """The README's 'What a client reads': the command runs, and lists the references shown."""
    pictures = [block for block in code_blocks(README) if block.code.startswith("$ mbpoll ")]
    assert len(pictures) == 1
    first, *shown = pictures[0].code.splitlines()
    command = shlex.split(first[2:])
    with MeterProcess(host=HOST) as meter:
        args = shlex.split(live(shlex.join(command), meter.port))[1:]
        done = run_mbpoll("-o", "5", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert set(mbpoll_values(done.stdout)) == set(mbpoll_values("\n".join(shown))), done.stdout
        assert done.stdout.splitlines()[0] == shown[0], "mbpoll -q starts with the polling line"
