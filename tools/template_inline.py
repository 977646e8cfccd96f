"""Put edge/viewer_request.js into template.yaml: CloudFormation takes a CloudFront Function's code only
inline (`FunctionCode`), so the build copies the source there, inside `!Sub`, with its fault policy line taken from
the RevocationReadFault parameter. `python -m tools.template_inline` rewrites
template.yaml in place; `--check` exits 1 when the template is stale (used by tests and CI).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SOURCE = ROOT / "edge" / "viewer_request.js"
_BLOCK = re.compile(
    r"^(?P<indent>[ ]+)FunctionCode: (?:!Sub )?\|\n(?P<body>(?:(?P=indent)[ ]+.*\n|[ \t]*\n)*)", re.MULTILINE
)
#: The function's fault policy line, and what the template makes of it: the RevocationReadFault stack parameter.
FAULT_LINE = "const ON_FAULT = 'allow';"
FAULT_PARAMETER = "const ON_FAULT = '${RevocationReadFault}';"


def render(source: str) -> str:
    """The function source as the template holds it (inside !Sub): the fault policy from the stack parameter."""
    if source.count(FAULT_LINE) != 1:
        raise ValueError(f"the function source must hold the line {FAULT_LINE!r} exactly once")
    if "${" in source:
        raise ValueError("the function source must not hold '${' (the template wraps it in !Sub)")
    return source.replace(FAULT_LINE, FAULT_PARAMETER)


def inline(template: str, source: str) -> str:
    """The template with the (single) FunctionCode literal block replaced by `source`."""
    matches = list(_BLOCK.finditer(template))
    if len(matches) != 1:
        raise ValueError(f"expected exactly one 'FunctionCode: |' block in the template, found {len(matches)}")
    match = matches[0]
    indent = match.group("indent") + "  "
    body = "".join(f"{indent}{line}\n" if line.strip() else "\n" for line in source.rstrip("\n").split("\n"))
    head = f"{match.group('indent')}FunctionCode: !Sub |\n"
    return template[: match.start()] + head + body + template[match.end("body") :]


def sync_template(
    argv: list[str], render: Callable[[str], str], *, stale: str, written: str, target: Path = TEMPLATE
) -> int:
    """The command line of a generator: rewrite ``target`` (template.yaml unless told) with ``render``, or with
    ``--check`` exit 1 (saying ``stale``) when that would change it."""
    current = target.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(stale, file=sys.stderr)
            return 1
        return 0
    target.write_text(wanted, encoding="utf-8")
    print(written)
    return 0


def main(argv: list[str]) -> int:
    source = SOURCE.read_text(encoding="utf-8")
    return sync_template(
        argv,
        lambda current: inline(current, render(source)),
        stale="template.yaml does not hold the current edge/viewer_request.js: run make template",
        written=f"inlined {SOURCE.name} ({len(SOURCE.read_bytes())} bytes) into {TEMPLATE.name}",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
