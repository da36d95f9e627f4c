"""The commands README.md shows, read out of its fenced code blocks.

A `bash` block holds shell commands: a line ending in `\\` goes on in the next one, a
trailing `# ...` is a comment, and a line starting with `#` is shown output. A `python`
block is one script. The acceptance tests run these texts, so a README edit that breaks a
command breaks a test.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(text: str | None = None) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    text = README.read_text() if text is None else text
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def shell_commands(body: str) -> list[str]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    commands, pending = [], ""
    for line in body.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.strip()[:-1].rstrip() + " "
            continue
        commands.append(_without_comment(pending + line.strip()).strip())
        pending = ""
    return commands


def commands(text: str | None = None) -> list[str]:
    """Every shell command and every Python script of the README."""
    found = []
    for language, body in blocks(text):
        if language == "bash":
            found += shell_commands(body)
        elif language == "python":
            found.append(body)
    return found


def _without_comment(line: str) -> str:
    """`cmd  # note` → `cmd`; a `#` inside quotes stays."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line
