"""docs/inside.md links each step to a line of code and quotes it: every quote must be on its line."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `code` ([label](../path#L12)), the quote possibly wrapped onto the next line before the link
LINK = re.compile(r"`([^`]+)`\s*\(\[[^\]]+\]\(\.\./([^)#]+)#L(\d+)\)\)")


def test_every_quoted_line_is_where_the_guide_links_it():
    text = (ROOT / "docs" / "inside.md").read_text()
    links = LINK.findall(text)
    assert len(links) >= 20
    for code, path, line in links:
        lines = (ROOT / path).read_text().splitlines()
        assert code in lines[int(line) - 1], f"{path}#L{line} no longer holds `{code}`: {lines[int(line) - 1]!r}"
