"""Attach the stack's viewer-request function and real-time log configuration to an existing distribution.

The product is an add-on: the distribution stays the user's. This module computes the change to its
``DistributionConfig`` (pure functions on dicts: :func:`plan_attach`), shows it as a unified diff, and only with
``--apply`` saves a backup of the current configuration and writes the new one with the ETag it read (so a change
someone made in between is never overwritten). ``--undo BACKUP.json`` puts the saved configuration back the same way.

    python -m tools.attach --distribution-id E123 --function-arn ARN --realtime-log-config-arn ARN \\
        [--origin-request-policy-id ID] [--behaviors default,/live/*] [--replace] [--apply] [--backup FILE]
    python -m tools.attach --undo BACKUP.json [--apply] [--force]

Rules CloudFront imposes, checked before anything is sent:

* one function per event type and cache behavior: a behavior whose viewer-request event already runs another
  CloudFront Function, or a Lambda@Edge function, is refused (``--replace`` replaces it, and says so);
* one real-time log configuration per cache behavior: a different one is refused likewise (``--replace`` switches
  it, and the other consumer stops receiving those records);
* one origin request policy per cache behavior, and only on a behavior with a cache policy: the stack's
  viewer-location policy (needed only for country and region bindings) is refused beside another policy
  (``--replace`` replaces it) and on legacy cache settings.

Behaviors are named ``default`` (the default cache behavior) or by their path pattern; without ``--behaviors``
every behavior is selected, since a behavior without the function serves content without a token.

Exit status: 0 done (or nothing to change), 1 refused (a conflict, a distribution changed in between, an undo over
someone else's change), 2 bad input (arguments, backup file, unknown behavior, AWS errors).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from core.files import replace_file

__all__ = [
    "BACKUP_FORMAT",
    "DEFAULT_BEHAVIOR",
    "AttachError",
    "Change",
    "Conflict",
    "Plan",
    "behavior_names",
    "config_diff",
    "main",
    "plan_attach",
    "plan_restore",
]

DEFAULT_BEHAVIOR = "default"
VIEWER_REQUEST = "viewer-request"
BACKUP_FORMAT = "media-shield/distribution-backup/1"
FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:cloudfront::\d{12}:function/[A-Za-z0-9_-]{1,64}$")
POLICY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REALTIME_LOG_CONFIG_ARN = re.compile(r"^arn:aws[a-z-]*:cloudfront::\d{12}:realtime-log-config/[A-Za-z0-9_-]{1,128}$")


class AttachError(ValueError):
    """Input that cannot describe a change (unknown behavior, malformed ARN, unreadable backup)."""


@dataclass(frozen=True)
class Change:
    behavior: str
    what: str  # "viewer-request function", "real-time log configuration", "origin request policy", ...
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.after is None:
            return f"{self.behavior}: remove {self.what} {self.before}"
        if self.before is None:
            return f"{self.behavior}: add {self.what} {self.after}"
        return f"{self.behavior}: replace {self.what} {self.before} -> {self.after}"


@dataclass(frozen=True)
class Conflict:
    behavior: str
    what: str
    current: str
    hint: str

    def __str__(self) -> str:
        return f"{self.behavior}: already has {self.what} {self.current} ({self.hint})"


@dataclass
class Plan:
    """What attaching would do: the configuration before and after, the changes, and what blocks them."""

    original: dict[str, Any]
    updated: dict[str, Any]
    behaviors: list[str]
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.updated != self.original


# -- domain: DistributionConfig dicts in, DistributionConfig dicts out -------------------------------------------


def _items(container: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((container or {}).get("Items") or [])


def _set_items(owner: dict[str, Any], key: str, items: list[dict[str, Any]]) -> None:
    owner[key] = {"Quantity": len(items), "Items": items} if items else {"Quantity": 0}


def _behaviors(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    named = [(DEFAULT_BEHAVIOR, config["DefaultCacheBehavior"])]
    named += [(b["PathPattern"], b) for b in _items(config.get("CacheBehaviors"))]
    return named


def behavior_names(config: dict[str, Any]) -> list[str]:
    """``default`` and the path patterns, in the distribution's order (the order CloudFront matches them in)."""
    return [name for name, _ in _behaviors(config)]


def _select(config: dict[str, Any], wanted: Sequence[str] | None) -> list[tuple[str, dict[str, Any]]]:
    available = _behaviors(config)
    if wanted is None:
        return available
    by_name = dict(available)
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise AttachError(
            f"no cache behavior {', '.join(repr(u) for u in unknown)} in this distribution; "
            f"its behaviors are: {', '.join(name for name, _ in available)}"
        )
    if not wanted:
        raise AttachError("--behaviors names no behavior")
    return [(name, by_name[name]) for name in dict.fromkeys(wanted)]


def plan_attach(
    config: dict[str, Any],
    *,
    function_arn: str | None,
    realtime_log_config_arn: str | None,
    behaviors: Sequence[str] | None = None,
    replace: bool = False,
    origin_request_policy_id: str | None = None,
) -> Plan:
    """The change that associates ``function_arn`` (viewer request) and ``realtime_log_config_arn`` with the chosen
    cache behaviors (all when ``behaviors`` is None). Existing associations of other event types are kept. A
    behavior that already has a different viewer-request function (CloudFront Function or Lambda@Edge) or a
    different real-time log configuration is a :class:`Conflict`, unless ``replace``: then it is a
    :class:`Change` that replaces it. ``origin_request_policy_id`` (the stack's viewer-location policy) is attached
    the same way. The input is not modified."""
    if function_arn is None and realtime_log_config_arn is None and origin_request_policy_id is None:
        raise AttachError(
            "nothing to attach: give --function-arn, --realtime-log-config-arn, --origin-request-policy-id or several"
        )
    if origin_request_policy_id is not None and not POLICY_ID.match(origin_request_policy_id):
        raise AttachError(
            f"{origin_request_policy_id!r} is not an origin request policy id "
            f"(stack output ViewerLocationOriginRequestPolicyId, e.g. 216adef6-5c7f-47e4-b989-5492eafa07d3)"
        )
    if function_arn is not None and not FUNCTION_ARN.match(function_arn):
        raise AttachError(f"{function_arn!r} is not a CloudFront Function ARN (arn:aws:cloudfront::<account>:function/<name>)")
    if realtime_log_config_arn is not None and not REALTIME_LOG_CONFIG_ARN.match(realtime_log_config_arn):
        raise AttachError(
            f"{realtime_log_config_arn!r} is not a real-time log configuration ARN "
            f"(arn:aws:cloudfront::<account>:realtime-log-config/<name>)"
        )
    updated = copy.deepcopy(config)
    selected = _select(updated, behaviors)
    plan = Plan(original=config, updated=updated, behaviors=[name for name, _ in selected])
    for name, behavior in selected:
        if function_arn is not None:
            _attach_function(plan, name, behavior, function_arn, replace)
        if realtime_log_config_arn is not None:
            _attach_log_config(plan, name, behavior, realtime_log_config_arn, replace)
        if origin_request_policy_id is not None:
            _attach_origin_request_policy(plan, name, behavior, origin_request_policy_id, replace)
    if plan.conflicts:
        plan.updated = copy.deepcopy(config)  # refused as a whole: nothing half-planned
        plan.changes = []
    return plan


def _attach_function(plan: Plan, name: str, behavior: dict[str, Any], arn: str, replace: bool) -> None:
    functions = _items(behavior.get("FunctionAssociations"))
    current = next((f for f in functions if f.get("EventType") == VIEWER_REQUEST), None)
    lambdas = _items(behavior.get("LambdaFunctionAssociations"))
    edge = [f for f in lambdas if f.get("EventType") == VIEWER_REQUEST]
    blocked = False
    if current is not None and current.get("FunctionARN") != arn and not replace:
        plan.conflicts.append(Conflict(
            name, "a viewer-request CloudFront Function", current.get("FunctionARN", "?"),
            "CloudFront runs one function per event type; --replace replaces it (its logic then no longer runs), "
            "or leave this behavior out with --behaviors",
        ))
        blocked = True
    for lam in edge:
        if not replace:
            plan.conflicts.append(Conflict(
                name, "a Lambda@Edge viewer-request function", lam.get("LambdaFunctionARN", "?"),
                "a behavior cannot run a CloudFront Function and a Lambda@Edge function on the same event; "
                "--replace removes the Lambda@Edge association, or leave this behavior out with --behaviors",
            ))
            blocked = True
    if blocked:
        return
    if edge:
        kept = [f for f in lambdas if f.get("EventType") != VIEWER_REQUEST]
        _set_items(behavior, "LambdaFunctionAssociations", kept)
        for lam in edge:
            plan.changes.append(Change(name, "Lambda@Edge viewer-request function", lam.get("LambdaFunctionARN"), None))
    if current is not None and current.get("FunctionARN") == arn:
        return
    others = [f for f in functions if f.get("EventType") != VIEWER_REQUEST]
    _set_items(behavior, "FunctionAssociations", [{"FunctionARN": arn, "EventType": VIEWER_REQUEST}, *others])
    plan.changes.append(Change(name, "viewer-request function", current.get("FunctionARN") if current else None, arn))


def _attach_log_config(plan: Plan, name: str, behavior: dict[str, Any], arn: str, replace: bool) -> None:
    _attach_setting(
        plan, name, behavior, "RealtimeLogConfigArn", arn, "real-time log configuration", replace,
        "a cache behavior sends real-time logs to one configuration; --replace switches it to this stack's "
        "(the current one stops receiving these records), or leave this behavior out with --behaviors",
    )


def _attach_origin_request_policy(plan: Plan, name: str, behavior: dict[str, Any], policy_id: str,
                                  replace: bool) -> None:
    if behavior.get("OriginRequestPolicyId") != policy_id and not behavior.get("CachePolicyId"):
        plan.conflicts.append(Conflict(
            name, "legacy cache settings (no cache policy)", "ForwardedValues",
            "an origin request policy needs a cache policy; add CloudFront-Viewer-Country and "
            "CloudFront-Viewer-Country-Region to this behavior's forwarded headers instead",
        ))
        return
    _attach_setting(
        plan, name, behavior, "OriginRequestPolicyId", policy_id, "origin request policy", replace,
        "add CloudFront-Viewer-Country and CloudFront-Viewer-Country-Region to that policy instead, or "
        "--replace it with the stack's (what it forwarded to the origin is then no longer forwarded)",
    )


def _attach_setting(plan: Plan, name: str, behavior: dict[str, Any], key: str, value: str, what: str, replace: bool,
                    hint: str) -> None:
    """Set one field of a behavior that holds one value: a different value there is a conflict unless ``replace``."""
    current = behavior.get(key) or None
    if current == value:
        return
    if current is not None and not replace:
        plan.conflicts.append(Conflict(name, f"{'an' if what[0] in 'aeiou' else 'a'} {what}", current, hint))
        return
    behavior[key] = value
    plan.changes.append(Change(name, what, current, value))


def plan_restore(current: dict[str, Any], backup: dict[str, Any]) -> Plan:
    """Putting the backed-up configuration back over ``current``."""
    original = backup["DistributionConfig"]
    return Plan(original=current, updated=copy.deepcopy(original), behaviors=behavior_names(original))


def config_diff(before: dict[str, Any], after: dict[str, Any], *, from_label: str, to_label: str) -> str:
    """Unified diff of two DistributionConfigs as sorted, indented JSON ('' when equal)."""

    def lines(config: dict[str, Any]) -> list[str]:
        return (json.dumps(config, indent=2, sort_keys=True, default=str) + "\n").splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(before), lines(after), fromfile=from_label, tofile=to_label, n=4))


# -- backups ----------------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _default_backup_path(distribution_id: str, what: str) -> Path:
    return Path(f"cloudfront-{distribution_id}-{what}-{_now().strftime('%Y%m%dT%H%M%SZ')}.json")


def _write_json(path: Path, data: dict[str, Any], *, exclusive: bool) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if exclusive:
        with path.open("x", encoding="utf-8") as handle:  # never overwrite an earlier backup
            handle.write(text)
        return
    replace_file(path, text.encode("utf-8"), new_file_mode=0o644)


def _backup(distribution_id: str, etag: str, config: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "format": BACKUP_FORMAT,
        "distribution_id": distribution_id,
        "etag": etag,
        "saved_at": _now().isoformat(),
        "reason": reason,
        "DistributionConfig": config,
    }


def read_backup(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttachError(f"cannot read backup {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BACKUP_FORMAT or not isinstance(
        data.get("DistributionConfig"), dict
    ) or not isinstance(data.get("distribution_id"), str):
        raise AttachError(f"{path} is not a backup written by tools.attach ({BACKUP_FORMAT})")
    return data


# -- command line -----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.attach",
        description=(
            "Associate the stack's viewer-request function and real-time log configuration with cache behaviors of "
            "an existing CloudFront distribution. Shows the change as a diff; changes nothing without --apply."
        ),
    )
    parser.add_argument("--distribution-id", help="the distribution to change (with --undo: taken from the backup)")
    parser.add_argument("--function-arn", help="stack output ViewerRequestFunctionArn")
    parser.add_argument("--realtime-log-config-arn", help="stack output RealtimeLogConfigArn")
    parser.add_argument("--origin-request-policy-id", help="stack output ViewerLocationOriginRequestPolicyId: "
                        "needed only for country or region bindings (CloudFront then sets those headers)")
    parser.add_argument(
        "--behaviors",
        help="comma-separated cache behaviors: 'default' and/or path patterns (default: every behavior)",
    )
    parser.add_argument("--replace", action="store_true", help="replace a different viewer-request function or "
                        "real-time log configuration instead of refusing")
    parser.add_argument("--apply", action="store_true", help="save a backup, then update the distribution")
    parser.add_argument("--backup", type=Path, help="backup file to write with --apply (default: "
                        "./cloudfront-<id>-before-attach-<time>.json)")
    parser.add_argument("--undo", type=Path, metavar="BACKUP.json", help="restore the configuration saved in a backup")
    parser.add_argument("--force", action="store_true", help="with --undo: restore even if the distribution was "
                        "changed after the backup's change")
    return parser


def main(argv: Sequence[str] | None = None, *, client: Any = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    from tools.distribution import CloudFrontDistributions, DistributionChangedError, DistributionError

    try:
        distributions = CloudFrontDistributions(client)
        if args.undo is not None:
            if (args.function_arn or args.realtime_log_config_arn or args.origin_request_policy_id or args.behaviors
                    or args.replace):
                raise AttachError("--undo takes no --function-arn, --realtime-log-config-arn, "
                                  "--origin-request-policy-id, --behaviors or --replace")
            return _undo(args, distributions, out, err)
        if not args.distribution_id:
            raise AttachError("--distribution-id is required")
        return _attach(args, distributions, out, err)
    except DistributionChangedError as exc:
        print(f"refused: {exc}", file=err)
        return 1
    except (AttachError, DistributionError) as exc:
        print(f"error: {exc}", file=err)
        return 2


def _attach(args: argparse.Namespace, distributions: Any, out: TextIO, err: TextIO) -> int:
    dist_id = args.distribution_id
    behaviors = [b.strip() for b in args.behaviors.split(",") if b.strip()] if args.behaviors is not None else None
    config, etag = distributions.get_config(dist_id)
    plan = plan_attach(
        config,
        function_arn=args.function_arn,
        realtime_log_config_arn=args.realtime_log_config_arn,
        behaviors=behaviors,
        replace=args.replace,
        origin_request_policy_id=args.origin_request_policy_id,
    )
    print(f"distribution {dist_id} (ETag {etag}), behaviors: {', '.join(plan.behaviors)}", file=err)
    if plan.conflicts:
        for conflict in plan.conflicts:
            print(f"refused: {conflict}", file=err)
        print("nothing changed", file=err)
        return 1
    if not plan.changed:
        print("already attached: nothing to change", file=err)
        return 0
    for change in plan.changes:
        print(f"  {change}", file=err)
    out.write(config_diff(plan.original, plan.updated, from_label=f"{dist_id} (current)", to_label=f"{dist_id} (attached)"))
    if not args.apply:
        print("dry run: nothing changed; re-run with --apply to save a backup and update the distribution", file=err)
        return 0
    path = args.backup or _default_backup_path(dist_id, "before-attach")
    backup = _backup(dist_id, etag, config, "before tools.attach")
    _write_json(path, backup, exclusive=True)
    print(f"backup of the current configuration: {path}", file=err)
    applied, new_etag = distributions.update_config(dist_id, plan.updated, etag)
    backup["applied"] = {"etag": new_etag, "DistributionConfig": applied}
    _write_json(path, backup, exclusive=False)
    print(
        f"updated distribution {dist_id} (ETag {new_etag}); CloudFront deploys it to the edge in a few minutes. "
        f"Undo: python -m tools.attach --undo {path} --apply",
        file=err,
    )
    return 0


def _undo(args: argparse.Namespace, distributions: Any, out: TextIO, err: TextIO) -> int:
    backup = read_backup(args.undo)
    dist_id = backup["distribution_id"]
    if args.distribution_id and args.distribution_id != dist_id:
        raise AttachError(f"{args.undo} is a backup of distribution {dist_id}, not {args.distribution_id}")
    current, etag = distributions.get_config(dist_id)
    applied = (backup.get("applied") or {}).get("DistributionConfig")
    if applied is not None and current != applied and not args.force:
        out.write(config_diff(applied, current, from_label=f"{dist_id} (as attach left it)", to_label=f"{dist_id} (now)"))
        print(
            f"refused: distribution {dist_id} changed after the change this backup undoes (diff above); restoring "
            f"the backup would revert those changes too. Re-run with --force to restore it anyway.",
            file=err,
        )
        return 1
    plan = plan_restore(current, backup)
    if not plan.changed:
        print(f"distribution {dist_id} already has the backed-up configuration: nothing to change", file=err)
        return 0
    out.write(config_diff(plan.original, plan.updated, from_label=f"{dist_id} (current)", to_label=f"{dist_id} (backup {backup['saved_at']})"))
    if not args.apply:
        print("dry run: nothing changed; re-run with --apply to restore the backup", file=err)
        return 0
    path = args.backup or _default_backup_path(dist_id, "before-undo")
    _write_json(path, _backup(dist_id, etag, current, f"before tools.attach --undo {args.undo}"), exclusive=True)
    print(f"backup of the current configuration: {path}", file=err)
    _, new_etag = distributions.update_config(dist_id, plan.updated, etag)
    print(f"restored distribution {dist_id} from {args.undo} (ETag {new_etag})", file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
