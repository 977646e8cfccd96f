"""Put edge/viewer_request.js into template.yaml: CloudFormation takes a CloudFront Function's code only
inline (`FunctionCode`), so the build copies the source there. `python -m edge.template_inline` rewrites
template.yaml in place; `--check` exits 1 when the template is stale (used by tests and CI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SOURCE = Path(__file__).resolve().parent / "viewer_request.js"
_BLOCK = re.compile(r"^(?P<indent>[ ]+)FunctionCode: \|\n(?P<body>(?:(?P=indent)[ ]+.*\n|[ \t]*\n)*)", re.MULTILINE)


def inline(template: str, source: str) -> str:
    """The template with the (single) FunctionCode literal block replaced by `source`."""
    matches = list(_BLOCK.finditer(template))
    if len(matches) != 1:
        raise ValueError(f"expected exactly one 'FunctionCode: |' block in the template, found {len(matches)}")
    match = matches[0]
    indent = match.group("indent") + "  "
    body = "".join(f"{indent}{line}\n" if line.strip() else "\n" for line in source.rstrip("\n").split("\n"))
    return template[: match.start("body")] + body + template[match.end("body") :]


def main(argv: list[str]) -> int:
    current = TEMPLATE.read_text(encoding="utf-8")
    wanted = inline(current, SOURCE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if current != wanted:
            print("template.yaml does not hold the current edge/viewer_request.js: run make template", file=sys.stderr)
            return 1
        return 0
    TEMPLATE.write_text(wanted, encoding="utf-8")
    print(f"inlined {SOURCE.name} ({len(SOURCE.read_bytes())} bytes) into {TEMPLATE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
