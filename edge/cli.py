"""`python -m edge sign | check | serve | demo` (CLI contract in docs/contracts.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from edge.binding import LOCATION_CODE, BindingError, Viewer, ip_binding, parse_ip
from edge.demo import run_demo
from edge.keys import InvalidKeyError, load_key_file
from edge.node_runtime import EdgeFunctionRunner, EdgeRuntimeError
from edge.paths import any_prefix_matches
from edge.server import PortError, serve
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
    asset = urlsplit(args.url).path
    if args.path_prefix and not any_prefix_matches(args.path_prefix, asset):
        print(f"warning: {asset} lies outside every --path-prefix ({', '.join(args.path_prefix)}): the URL printed "
              "below is denied (403 out-of-scope); other paths of the prefixes are allowed", file=sys.stderr)
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
    try:
        serve(origin, existing_store(args.store), port=args.port, extra_headers=extra_headers,
              viewer_ip=args.viewer_ip)
    except PortError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def viewer_address(text: str) -> str:
    """An argparse type: a viewer's IP address (IPv4 or IPv6), or bad input (exit 2). It is passed on as written:
    the function canonicalises addresses itself, and a test of an odd spelling must reach it."""
    try:
        parse_ip(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text.strip()


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1-65535 (0: any free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def location_code(kind: str) -> Callable[[str], str]:
    """An argparse type for --bind-country and --bind-region: the code CloudFront would put in the header."""
    def parse(text: str) -> str:
        code = text.strip().upper()
        if not LOCATION_CODE[kind].match(code):
            expected = ("an ISO 3166-1 alpha-2 code such as DE or US" if kind == "country"
                        else "a region code of 1-3 letters or digits, the first-level ISO 3166-2 subdivision (BE, CA)")
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}: no viewer would ever match it")
        return code
    return parse


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
    sign.add_argument("--bind-country", type=location_code("country"),
                      help="bind to this viewer country (ISO 3166-1 alpha-2, e.g. DE)")
    sign.add_argument("--bind-region", type=location_code("region"),
                      help="bind to this viewer region (CloudFront-Viewer-Country-Region, e.g. BE)")
    sign.add_argument("--bind-ua", help="bind to this exact User-Agent")
    sign.add_argument("--bind-header", action="append", default=[], metavar="NAME:VALUE", help="bind a header")
    sign.add_argument("--now", type=int, help="issue time, epoch seconds (default: now)")
    sign.add_argument("url", help="asset URL or path, e.g. https://cdn.example.com/live/ch1/master.m3u8")
    sign.set_defaults(run=_sign)

    check = commands.add_parser("check", help="decide one request with the real edge function under node")
    check.add_argument("--store", required=True, help="local KeyValueStore JSON file")
    check.add_argument("--viewer-ip", type=viewer_address, default="127.0.0.1",
                       help="viewer address (default 127.0.0.1)")
    check.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="request header")
    check.add_argument("--now", type=float, help="clock, epoch seconds (default: now)")
    check.add_argument("url")
    check.set_defaults(run=_check)

    serve = commands.add_parser("serve", help="serve a folder through the real edge function on 127.0.0.1")
    serve.add_argument("--origin", required=True, help="folder served as the origin")
    serve.add_argument("--store", required=True, help="local KeyValueStore JSON file (re-read per request)")
    serve.add_argument("--port", type=port_number, default=8080, help="port on 127.0.0.1 (8080; 0: any free one)")
    serve.add_argument("--viewer-ip", type=viewer_address,
                       help="the viewer address the function sees (default: the client's, 127.0.0.1), e.g. to play "
                            "a URL bound to another address")
    serve.add_argument("--add-header", action="append", default=[], metavar="NAME:VALUE",
                       help="header CloudFront would add, e.g. CloudFront-Viewer-Country:DE (viewer headers too)")
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
