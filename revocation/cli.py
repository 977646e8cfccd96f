"""Revocation commands for ``python -m detection``: ``revoke``, ``unrevoke``, ``revocations``, ``flagged``.

``register(subparsers)`` adds them to an ``argparse`` sub-command set; each sets ``run`` (``args.run(args)`` returns
the exit status: 0 done, 1 recorded in the ledger but not yet at the edge, 2 bad input, printed as ``error: ...``).

    python -m detection revoke SESSION --reason R [--ttl SECONDS | --until EPOCH] --ledger LEDGER.sqlite \\
        --store STORE.json [--by NAME] [--force]
    python -m detection unrevoke SESSION --ledger LEDGER.sqlite --store STORE.json [--by NAME]
    python -m detection revocations --ledger LEDGER.sqlite [--json]
    python -m detection flagged --ledger LEDGER.sqlite [--since EPOCH] [--json]

``--ledger`` is a ``.sqlite`` file (the local twin) or ``dynamodb:<table>``; ``--store`` a ``.json`` file (the
local twin) or a KeyValueStore ARN.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import NoRegionError

from edge.store import EdgeStore, EdgeStoreError, open_store
from revocation.ledger import Ledger, LedgerError, open_ledger
from revocation.service import (
    DEFAULT_MANUAL_TTL_SECONDS,
    ManualResult,
    RevocationError,
    lift,
    list_flagged,
    list_revoked,
    revoke,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_NOT_PUBLISHED", "EXIT_OK", "register"]

EXIT_OK, EXIT_NOT_PUBLISHED, EXIT_BAD_INPUT = 0, 1, 2

AllowSessions = Callable[[argparse.Namespace], Collection[str]]


def register(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    *,
    allow_sessions: AllowSessions | None = None,
) -> None:
    """Add ``revoke``, ``unrevoke``, ``revocations`` and ``flagged`` to ``subparsers``.

    ``allow_sessions(args)`` returns the detection config's allow-listed session ids (a manual revoke of one needs
    ``--force``); without it, no session is allow-listed.
    """
    loader = allow_sessions or (lambda args: ())

    p = subparsers.add_parser(
        "revoke", help="revoke a session now (ledger + edge store)", description="Revoke a session by hand."
    )
    p.add_argument("session", metavar="SESSION", help="session id, 16-32 of A-Z a-z 0-9 _ -")
    p.add_argument("--reason", required=True, help="reason code, e.g. manual, restreaming (a-z 0-9 _ . -)")
    until = p.add_mutually_exclusive_group()
    until.add_argument(
        "--ttl", type=int, metavar="SECONDS", help=f"revoke for this long (default {DEFAULT_MANUAL_TTL_SECONDS})"
    )
    until.add_argument("--until", type=int, metavar="EPOCH", help="revoke until this time (epoch seconds)")
    _common(p, store=True)
    p.add_argument("--force", action="store_true", help="revoke even if the session is allow-listed")
    p.set_defaults(run=_guarded(lambda args: _revoke(args, loader)))

    p = subparsers.add_parser("unrevoke", help="lift a session's revocation now", description="Lift a revocation.")
    p.add_argument("session", metavar="SESSION")
    _common(p, store=True)
    p.set_defaults(run=_guarded(_unrevoke))

    p = subparsers.add_parser("revocations", help="list revocations in force", description="List revoked sessions.")
    _common(p, store=False)
    p.set_defaults(run=_guarded(_revocations))

    p = subparsers.add_parser("flagged", help="list flagged sessions with their reasons", description="List verdicts.")
    p.add_argument("--since", type=int, metavar="EPOCH", help="from this time (default: the last 24 hours)")
    _common(p, store=False)
    p.set_defaults(run=_guarded(_flagged))


def _common(p: argparse.ArgumentParser, *, store: bool) -> None:
    p.add_argument("--ledger", required=True, help="LEDGER.sqlite (local twin) or dynamodb:<table>")
    if store:
        p.add_argument("--store", required=True, help="STORE.json (local twin) or a KeyValueStore ARN")
        p.add_argument("--by", help="operator name recorded in the ledger (default: the login name)")
    p.add_argument("--create", action="store_true", help="start a new local ledger (and store) when the file is "
                   "not there; without it a path that does not exist is an error, not an empty ledger")
    p.add_argument("--now", type=int, metavar="EPOCH", help=argparse.SUPPRESS)  # a fixed clock, for tests
    p.add_argument("--json", action="store_true", help="print JSON")


def existing_or_created(spec: str, what: str, create: bool) -> str:
    """``spec`` as given, once a local file it names is known to exist (or ``--create`` says to start one): a typo
    must not look like an empty ledger or a new store."""
    if spec.startswith(("dynamodb:", "arn:")):
        return spec
    path = Path(spec.removeprefix("sqlite:"))
    if not path.exists() and not create:
        raise RevocationError(f"no {what} at {path}: check the path, or add --create to start a new one")
    return spec


def _ledger(args: argparse.Namespace) -> Ledger:
    return open_ledger(existing_or_created(args.ledger, "ledger", args.create))


def _store(args: argparse.Namespace) -> EdgeStore:
    return open_store(existing_or_created(args.store, "edge store", args.create))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (RevocationError, LedgerError, EdgeStoreError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except NoRegionError:
            print("error: no AWS region for the ledger or the store: set AWS_REGION (or AWS_DEFAULT_REGION), or use "
                  "a profile that names one", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


def _revoke(args: argparse.Namespace, allow_sessions: AllowSessions) -> int:
    with _ledger(args) as ledger:
        result = revoke(
            ledger,
            _store(args),
            args.session,
            args.reason,
            by=_operator(args),
            ttl=args.ttl,
            expires_at=args.until,
            now=args.now,
            allow_sessions=set(allow_sessions(args)),
            force=args.force,
        )
    return _report(args, result)


def _unrevoke(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        result = lift(ledger, _store(args), args.session, by=_operator(args), now=args.now)
    return _report(args, result)


def _revocations(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        revocations = list_revoked(ledger, args.now)
    if args.json:
        _print_json({"revocations": [r.model_dump() for r in revocations]})
        return EXIT_OK
    if not revocations:
        print("no revocations in force")
    for r in revocations:
        print(f"{r.session_id:<32}  until {_time(r.expires_at)}  reason {r.reason:<16}  by {r.revoked_by}")
    return EXIT_OK


def _flagged(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        verdicts = list_flagged(ledger, since=args.since, until=args.now)
    if args.json:
        _print_json({"verdicts": [v.model_dump(mode="json") for v in verdicts]})
        return EXIT_OK
    if not verdicts:
        print("no flagged sessions")
    for v in verdicts:
        reasons = "; ".join(f"{r.code}: {r.detail}" if r.detail else r.code for r in v.reasons) or "-"
        print(f"{_time(v.decided_at)}  {v.session_id:<32}  {v.action:<7}  score {v.score:.3g}  {reasons}")
    return EXIT_OK


def _report(args: argparse.Namespace, result: ManualResult) -> int:
    r = result.revocation
    if args.json:
        _print_json(result.to_dict())
    elif r.lifted_at is not None:
        print(f"{r.session_id}: {result.outcome} by {r.lifted_by} at {_time(r.lifted_at)}")
    else:
        print(f"{r.session_id}: {result.outcome}, revoked until {_time(r.expires_at)} ({r.reason}, by {r.revoked_by})")
    if result.publish is not None and result.publish.capacity_warning:
        print(
            f"warning: the edge store is at {result.publish.fraction:.0%} of its limit;"
            f" {len(result.publish.skipped)} revocation(s) could not be published",
            file=sys.stderr,
        )
    if not result.published:
        print(
            f"error: recorded in the ledger but not yet at the edge: {result.publish_error}"
            " (the next publish run applies it)",
            file=sys.stderr,
        )
        return EXIT_NOT_PUBLISHED
    return EXIT_OK


def _operator(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _time(epoch: int) -> str:
    return f"{epoch} ({datetime.fromtimestamp(epoch, tz=timezone.utc):%Y-%m-%d %H:%M:%SZ})"


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
