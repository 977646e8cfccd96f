"""`python -m edge sign | check | serve | demo` (CLI contract in docs/contracts.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from edge.binding import BindingError, Viewer, ip_binding
from edge.demo import run_demo
from edge.keys import InvalidKeyError, load_key_file
from edge.node_runtime import EdgeFunctionRunner, EdgeRuntimeError
from edge.server import serve
from edge.store import EdgeStoreError, LocalEdgeStore
from edge.tokens import DEFAULT_TTL_SECONDS, TokenRequest, TokenRequestError, issue_token

EXIT_OK, EXIT_DENY, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ValueError):
    """Bad input from the command line: printed as `error: ...`, exit 2."""


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"header {text!r} must look like NAME:VALUE")
    return name.strip().lower(), value.strip()


def _sign(args: argparse.Namespace) -> int:
    key = load_key_file(args.key_file, args.kid)
    headers: dict[str, str] = {}
    bindings: list[str] = []
    viewer_ip = None
    if args.bind_ip:
        descriptor, viewer_ip = ip_binding(args.bind_ip)
        bindings.append(descriptor)
    for flag, descriptor, header in (
        (args.bind_country, "country", "cloudfront-viewer-country"),
        (args.bind_region, "region", "cloudfront-viewer-country-region"),
        (args.bind_ua, "ua", "user-agent"),
    ):
        if flag:
            bindings.append(descriptor)
            headers[header] = flag
    for text in args.bind_header:
        name, value = parse_header(text)
        bindings.append(f"h:{name}")
        headers[name] = value
    request = TokenRequest(
        session_id=args.session,
        ttl_seconds=args.ttl,
        paths=args.path_prefix,
        exempt_paths=args.exempt_prefix,
        bindings=bindings,
        viewer=Viewer(ip=viewer_ip, headers=headers),
    )
    issued = issue_token(request, key, now=args.now)
    print(f"session {issued.session_id} kid {key.kid} expires {issued.expires_at}", file=sys.stderr)
    print("signed locally: nothing is recorded in a ledger, so a revocation of this session lasts only as long as "
          "the detection or the operator sets it (the token-issuing API records every token)", file=sys.stderr)
    print(issued.url_for(args.url))
    return EXIT_OK


def request_path(url: str) -> tuple[str, str]:
    """The URI and query string CloudFront hands the function for this URL (or bare path)."""
    parts = urlsplit(url)
    if not parts.path.startswith("/"):
        raise UsageError(f"{url!r} is neither an absolute URL nor a path starting with /")
    return parts.path, parts.query


def existing_store(path: str) -> Path:
    store_path = Path(path)
    if not store_path.is_file():
        raise UsageError(f"store file {path} does not exist")
    LocalEdgeStore(store_path).items()  # a corrupt store is reported here, before node sees it
    return store_path


def _check(args: argparse.Namespace) -> int:
    store_path = existing_store(args.store)
    uri, query = request_path(args.url)
    viewer = Viewer.of(args.viewer_ip, dict(parse_header(h) for h in args.header))
    with EdgeFunctionRunner() as runner:
        decision = runner.decide(uri, viewer, args.now or time.time(), store_path=store_path, querystring=query)
    print(json.dumps(decision.to_dict()))
    return EXIT_OK if decision.allowed else EXIT_DENY


def _serve(args: argparse.Namespace) -> int:
    origin = Path(args.origin)
    if not origin.is_dir():
        raise UsageError(f"origin {args.origin} is not a directory")
    extra_headers = dict(parse_header(h) for h in args.add_header)
    serve(origin, existing_store(args.store), port=args.port, extra_headers=extra_headers)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    return run_demo(Path(args.workdir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sign = commands.add_parser("sign", help="print a tokenized URL (the last line of output)")
    sign.add_argument("--key-file", required=True, help="raw base64url key (needs --kid) or JSON {kid, key}")
    sign.add_argument("--kid", help="key id, required with a raw key file")
    sign.add_argument("--session", help="session id, 16-32 chars of [A-Za-z0-9_-] (default: random)")
    sign.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds (default 3600)")
    sign.add_argument("--path-prefix", action="append", default=[], help="allowed path prefix (repeatable)")
    sign.add_argument("--exempt-prefix", action="append", default=[], help="prefix exempt from viewer binding")
    sign.add_argument("--bind-ip", help="address (exact) or CIDR prefix, e.g. 203.0.113.0/24 or 2001:db8:1::/48")
    sign.add_argument("--bind-country", help="bind to this viewer country (ISO 3166-1 alpha-2)")
    sign.add_argument("--bind-region", help="bind to this viewer region (CloudFront-Viewer-Country-Region)")
    sign.add_argument("--bind-ua", help="bind to this exact User-Agent")
    sign.add_argument("--bind-header", action="append", default=[], metavar="NAME:VALUE", help="bind a header")
    sign.add_argument("--now", type=int, help="issue time, epoch seconds (default: now)")
    sign.add_argument("url", help="asset URL or path, e.g. https://cdn.example.com/live/ch1/master.m3u8")
    sign.set_defaults(run=_sign)

    check = commands.add_parser("check", help="decide one request with the real edge function under node")
    check.add_argument("--store", required=True, help="local KeyValueStore JSON file")
    check.add_argument("--viewer-ip", default="127.0.0.1", help="viewer address (default 127.0.0.1)")
    check.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="request header")
    check.add_argument("--now", type=float, help="clock, epoch seconds (default: now)")
    check.add_argument("url")
    check.set_defaults(run=_check)

    serve = commands.add_parser("serve", help="serve a folder through the real edge function on 127.0.0.1")
    serve.add_argument("--origin", required=True, help="folder served as the origin")
    serve.add_argument("--store", required=True, help="local KeyValueStore JSON file (re-read per request)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--add-header", action="append", default=[], metavar="NAME:VALUE",
                       help="header CloudFront would add, e.g. CloudFront-Viewer-Country:DE")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="issue, check, revoke, check again")
    demo.add_argument("--workdir", default="out/edge-demo")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    # bad input, and store and runtime errors, carry their own clear messages
    except (UsageError, InvalidKeyError, BindingError, TokenRequestError, EdgeStoreError, EdgeRuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
