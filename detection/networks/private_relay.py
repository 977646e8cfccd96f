"""Apple's published iCloud Private Relay egress ranges, as a registry file.

Apple publishes every egress prefix of Private Relay, with the location each one stands for, at
https://mask-api.icloud.com/egress-ip-ranges.csv (linked from "Prepare your network or web server for iCloud Private
Relay"). The file is a geofeed (RFC 8805): one prefix per line, ``prefix,country,region,city,postal code``, no
header; ``#`` starts a comment. :func:`import_egress_csv` turns it into a registry file of ``privacy_relay`` prefix
entries, for the detection config's ``networks.files``. A malformed line stops the import with its line number
(nothing is written): a partial list would silently leave relay users unknown.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
from pathlib import Path
from typing import Any

from detection.networks.registry import RegistryError

__all__ = ["EGRESS_LIST_URL", "import_egress_csv", "parse_egress_csv"]

EGRESS_LIST_URL = "https://mask-api.icloud.com/egress-ip-ranges.csv"


def parse_egress_csv(text: str) -> list[dict[str, Any]]:
    """Registry entries (``privacy_relay`` prefixes) of the geofeed ``text``. Raises RegistryError on a bad line."""
    entries: list[dict[str, Any]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        prefix = row[0].strip()
        try:
            network = ipaddress.ip_network(prefix, strict=True)
        except ValueError as exc:
            raise RegistryError(f"line {number}: {prefix!r} is not an IP prefix ({exc})") from None
        country = row[1].strip().upper() if len(row) > 1 else ""
        if country and not (len(country) == 2 and country.isascii() and country.isalpha()):
            raise RegistryError(f"line {number}: {row[1]!r} is not an ISO 3166-1 alpha-2 country code")
        entry: dict[str, Any] = {"class": "privacy_relay", "prefix": str(network),
                                 "name": "iCloud Private Relay egress", "source": EGRESS_LIST_URL}
        if country:
            entry["country"] = country
        entries.append(entry)
    if not entries:
        raise RegistryError("the file holds no prefix: is it Apple's egress-ip-ranges.csv?")
    return entries


def import_egress_csv(source: Path, out: Path) -> dict[str, Any]:
    """Write the registry file of Apple's egress list ``source`` to ``out``; return a summary. The version names
    the list's digest, so verdicts made with it can be traced to this exact list."""
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RegistryError(f"{source} is not UTF-8 text: is it Apple's egress-ip-ranges.csv?") from None
    entries = parse_egress_csv(text)
    version = f"apple-private-relay.{hashlib.sha256(raw).hexdigest()[:12]}"
    document = {"version": version, "about": f"iCloud Private Relay egress ranges from {EGRESS_LIST_URL}",
                "entries": entries}
    out.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    v4 = sum(1 for e in entries if ":" not in e["prefix"])
    return {"version": version, "prefixes": len(entries), "ipv4": v4, "ipv6": len(entries) - v4, "out": str(out)}
