"""`python -m rotation rotate --secret-file F --store STORE.json [--max-token-lifetime SECONDS] [--now EPOCH]`

Rotates the local twins the way the rotation Lambda rotates the real secret, with the same four steps: a new kid and
key in F (the local signing secret, the file ``python -m edge sign --key-file F`` reads), ``k:<new kid>`` added to the
store, keys whose tokens have all expired removed from it. If F does not exist or is empty, the first key is created
(bootstrap a local setup with it). An unfinished rotation (``F.pending.json`` left by an interrupted run) is resumed.

Exit 0 on success, 1 if the rotation could not complete (the self-test failed), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from edge.store import EdgeStoreError, LocalEdgeStore
from edge.tokens import MAX_TTL_SECONDS
from rotation.keyring import DEFAULT_MARGIN_SECONDS, InvalidSecretValue, RotationPolicy, parse_secret_value
from rotation.secrets import LocalSecretFile, SecretError
from rotation.steps import KeyRotation, RotationAbandoned, RotationError, StepResult

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ValueError):
    """Bad input from the command line: printed as `error: ...`, exit 2."""


def _check_secret_file(path: Path) -> str | None:
    """The kid in F (None when F is missing or empty); UsageError if F is something else than a signing secret."""
    if path.is_dir():
        raise UsageError(f"secret file {path} is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"the directory of secret file {path} does not exist")
    current = LocalSecretFile(path).current_value()
    if current is None:
        return None
    try:
        ring = parse_secret_value(current)
    except InvalidSecretValue as exc:
        raise UsageError(f"secret file {path}: {exc}") from None
    if ring.current is None:
        raise UsageError(
            f'secret file {path} is not a signing secret {{"kid": "...", "key": "<base64url>", ...}};'
            " give a new or empty file to create the first key"
        )
    return ring.current.kid


def _check_store(path: Path) -> LocalEdgeStore:
    if not path.name.lower().endswith(".json"):
        raise UsageError(f"store {path} must be a local KeyValueStore .json file")
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError(f"store {path} is not a file in an existing directory")
    store = LocalEdgeStore(path)
    store.items()  # a corrupt store is reported here, before anything is written
    return store


def _rotate(args: argparse.Namespace) -> int:
    now = int(time.time()) if args.now is None else args.now
    if now < 0:
        raise UsageError("--now must be epoch seconds (>= 0)")
    try:
        policy = RotationPolicy(max_token_lifetime=args.max_token_lifetime, margin=args.margin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    secret_path, store_path = Path(args.secret_file), Path(args.store)
    previous_kid = _check_secret_file(secret_path)
    store = _check_store(store_path)
    secret = LocalSecretFile(secret_path)
    rotation = KeyRotation(secret, store, policy)

    token = secret.pending_token()
    if token is not None and secret.describe().is_current(token):
        secret.abandon(token)  # an earlier run promoted it and stopped before removing the sidecar
        token = None
    if token is not None:
        print(f"resuming the unfinished rotation {token}", file=sys.stderr)
    else:
        token = str(uuid.uuid4())
    try:
        results = rotation.rotate(token, now)
    except RotationAbandoned as exc:
        print(f"note: {exc}", file=sys.stderr)
        results = rotation.rotate(str(uuid.uuid4()), now)
    _report(results, previous_kid, store)
    return EXIT_OK


def _report(results: list[StepResult], previous_kid: str | None, store: LocalEdgeStore) -> None:
    by_step = {result.step: result for result in results}
    new_kid = by_step["finishSecret"].kid or by_step["createSecret"].kid
    deleted = by_step["setSecret"].deleted
    missing = by_step["testSecret"].missing
    print(f"new kid: {new_kid}")
    print(f"previous kid: {previous_kid if previous_kid else 'none (first key created)'}")
    print(f"deleted kids: {', '.join(deleted) if deleted else 'none'}")
    if missing:
        print(f"warning: kids listed in the secret but missing from the store: {', '.join(missing)}", file=sys.stderr)
    kids = sorted(key.removeprefix("k:") for key in store.items("k:"))
    print(f"kids in store: {', '.join(kids)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rotation", description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate", help="rotate the local signing secret and publish the new key to the store")
    rotate.add_argument("--secret-file", required=True, help="local signing secret (JSON); created if missing or empty")
    rotate.add_argument("--store", required=True, help="local KeyValueStore JSON file; created if missing")
    rotate.add_argument(
        "--max-token-lifetime",
        type=int,
        default=MAX_TTL_SECONDS,
        metavar="SECONDS",
        help=f"longest lifetime of a token signed with these keys (default {MAX_TTL_SECONDS}, the most any token can have)",
    )
    rotate.add_argument(
        "--margin",
        type=int,
        default=DEFAULT_MARGIN_SECONDS,
        metavar="SECONDS",
        help=f"issuer key cache + clock skew + rotation time, kept on top of the lifetime (default {DEFAULT_MARGIN_SECONDS})",
    )
    rotate.add_argument("--now", type=int, metavar="EPOCH", help="clock, epoch seconds (default: now)")
    rotate.set_defaults(run=_rotate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, InvalidSecretValue, SecretError, EdgeStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
