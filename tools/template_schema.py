"""Put the real-time log schema into template.yaml: the real-time log configuration's ``Fields`` and the Glue table's
``Columns`` both come from :data:`detection.logs.schema.DETECTION_FIELDS`, so the edge, Firehose's Parquet conversion,
Athena and the local reader agree on one list.

Each generated list sits between two marker comments in the template::

    # BEGIN generated: realtime-log-fields (python -m tools.template_schema)
    - timestamp
    ...
    # END generated: realtime-log-fields

``python -m tools.template_schema`` rewrites the blocks in place; ``--check`` exits 1 when the template is stale
(tests/infra/integration/test_template_pipeline.py runs it). Like ``python -m tools.template_inline`` for the function code.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence

from detection.logs.schema import DETECTION_FIELDS, Field
from tools.template_inline import TEMPLATE, sync_template

_BLOCK = re.compile(
    r"^(?P<indent>[ ]*)# BEGIN generated: (?P<name>[a-z-]+)[^\n]*\n"
    r"(?P<body>(?:(?!(?P=indent)# END generated: ).*\n)*?)"
    r"(?P=indent)# END generated: (?P=name)[^\n]*\n",
    re.MULTILINE,
)


def realtime_log_fields(fields: Sequence[Field], indent: str) -> str:
    """YAML sequence items: CloudFront field names, canonical order."""
    return "".join(f"{indent}- {f.name}\n" for f in fields)


def glue_columns(fields: Sequence[Field], indent: str) -> str:
    """YAML sequence items: Glue ``Column`` objects (name, Hive type, description as the comment)."""
    lines = []
    for f in fields:
        comment = f.description if len(f.description) <= 255 else f.description[:252] + "..."
        lines.append(f"{indent}- {{Name: {f.column}, Type: {f.athena_type}, Comment: {json.dumps(comment)}}}\n")
    return "".join(lines)


GENERATORS: dict[str, Callable[[Sequence[Field], str], str]] = {
    "realtime-log-fields": realtime_log_fields,
    "glue-columns": glue_columns,
}


def render(template: str, fields: Sequence[Field] = DETECTION_FIELDS) -> str:
    """The template with every generated block rewritten; each known block must appear exactly once."""
    seen: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise ValueError(f"unknown generated block {name!r} in the template (known: {', '.join(GENERATORS)})")
        seen[name] = seen.get(name, 0) + 1
        body = GENERATORS[name](fields, match.group("indent"))
        whole, start = match.group(0), match.start(0)
        return whole[: match.start("body") - start] + body + whole[match.end("body") - start :]

    rendered = _BLOCK.sub(replace, template)
    wrong = {name: seen.get(name, 0) for name in GENERATORS if seen.get(name, 0) != 1}
    if wrong:
        raise ValueError(f"expected each generated block exactly once in the template, found {wrong}")
    return rendered


def main(argv: list[str]) -> int:
    return sync_template(
        argv,
        render,
        stale="template.yaml does not hold detection.logs.schema.DETECTION_FIELDS: run python -m tools.template_schema",
        written=f"wrote {len(DETECTION_FIELDS)} real-time log fields and Glue columns into {TEMPLATE.name}",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
