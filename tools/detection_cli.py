"""``python -m detection detect | generate | convert | evaluate | demo`` (CLI contract in docs/contracts.md).

- ``detect --logs PATH [--fields a,b,c] [--window MINUTES] [--now EPOCH] [--out FILE] [--config FILE] [--monitor]``
  writes ``{"sessions": [...], "stats": {...}}`` (``--out -`` or no ``--out``: stdout). Exit 0; exit 2 with
  ``error: ...`` on bad input (missing or unusable logs, unknown field, bad window, bad config).
- ``generate --out DIR --sessions N --minutes M --seed S`` writes a labelled corpus.
- ``convert --logs SRC --out DST [--fields ...]`` writes Parquet of TSV logs.
- ``evaluate --corpus DIR [--window MINUTES] [--json] [--config FILE]`` prints the evaluation table.
- ``networks show [--config FILE] [--entries] [--lookup ASN_OR_IP]`` prints the network registry;
  ``networks import-private-relay --csv FILE --out FILE`` writes a registry file of Apple's Private Relay ranges.

The engines (DuckDB, the generator, the demo's report libraries) are imported by the subcommand that runs them,
so that ``revoke`` or ``--help`` does not wait for them.

Subcommands are ``COMMANDS`` (name -> (add_arguments, run, help)), whose errors ``main`` reports, plus the
revocation commands of :mod:`revocation.cli`, which report their own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from detection.scoring.config import ConfigError, DetectionConfig
from detection.scoring.query import QueryError
from edge.store import EdgeStoreError
from revocation import cli as revocation_cli
from revocation.ledger import LedgerError
from revocation.service import RevocationError
from tools.output_paths import OutputPathError, output_file, output_folder
from tools.progress import progress_bar

EXIT_OK, EXIT_BAD_INPUT = 0, 2

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]


class UsageError(ValueError):
    """Bad input from the command line: printed as ``error: ...``, exit 2."""


def _positive(unit: str, most: float, what: str) -> Callable[[str], float]:
    """An argparse type: a number of ``unit`` above 0 and at most ``most`` (``what`` names it in the message)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not math.isfinite(value) or not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"{what} must be between 0 and {most:g} {unit}, not {text}")
        return value

    return parse


_positive_minutes = _positive("minutes", 7 * 24 * 60, "the window")
_positive_seconds = _positive("seconds", 300, "the batching window")


def _epoch(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not epoch seconds") from None
    if not math.isfinite(value) or value < 0 or value >= 2**40:
        raise argparse.ArgumentTypeError(f"{text!r} is not epoch seconds")
    return value


def _config(args: argparse.Namespace) -> Any:
    config = DetectionConfig.load(args.config) if getattr(args, "config", None) else DetectionConfig()
    if getattr(args, "monitor", False):
        config = config.model_copy(update={"monitor": True})
    return config


def _check_out(args: argparse.Namespace) -> None:
    """An --out file, checked before any work: not a folder, not the input, in a folder that can exist."""
    if args.out not in (None, "-"):
        output_file(args.out, inputs=[args.logs])


def _write_json(document: Any, out: str | None, stdout: TextIO) -> None:
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    if out is None or out == "-":
        stdout.write(text)
        stdout.flush()
    else:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


# -- detect ---------------------------------------------------------------------------------------------------------


def _detect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", required=True, help="a log file or folder (TSV, gzip, Firehose folders, Parquet)")
    parser.add_argument("--fields", help="the real-time log field list, a,b,c (default: fields.txt of the folder)")
    parser.add_argument("--window", type=_positive_minutes, default=10.0, help="window length in minutes (10)")
    parser.add_argument("--now", type=_epoch, help="window end, epoch seconds (default: just after the newest record)")
    parser.add_argument("--out", help="output file; - or none: stdout")
    parser.add_argument("--config", help="detection config JSON (thresholds, allow-lists, monitor mode)")
    parser.add_argument("--monitor", action="store_true", help="monitor mode: flag, never revoke")


def _detect_command_arguments(parser: argparse.ArgumentParser) -> None:
    _detect_arguments(parser)
    parser.add_argument("--report", help="also write the HTML report of the verdicts here (as `report` does)")


def _detect(args: argparse.Namespace) -> int:
    from detection.detect import detect

    _check_out(args)
    if args.report:
        output_file(args.report, inputs=[args.logs])
    config = _config(args)
    run = detect(args.logs, fields=args.fields, window_minutes=args.window, now=args.now, config=config,
                 keep_features=bool(args.report))
    document = run.to_dict()
    _write_json(document, args.out, sys.stdout)
    if args.report:
        from tools.verdict_report import build_report, write_report

        write_report(args.report, build_report(document, args.logs, fields=args.fields, config=config,
                                               features=run.features))
        print(f"wrote {args.report}", file=sys.stderr)
    stats = run.stats
    skipped = stats["records_skipped_total"]
    print(
        f"{stats['records_read']} records, {skipped} skipped, {stats['sessions_scored']} sessions scored, "
        f"{stats['revoke']} revoke, {stats['flag']} flag, {stats['monitor']} monitor "
        f"({stats['timings']['total']:.2f} s)",
        file=sys.stderr,
    )
    _warn_about_input(stats.get("input", {}))
    return EXIT_OK


def _warn_about_input(report: dict[str, Any]) -> None:
    """Say on the console what the JSON says of damaged input: a file read only up to its damage loses records."""
    for path, why in sorted((report.get("files_damaged") or {}).items()):
        print(f"warning: {path}: {why}; its records up to the damage were read, the rest is lost", file=sys.stderr)
    skipped = {kind: n for kind, n in (report.get("records_skipped") or {}).items() if n}
    if skipped:
        print("warning: records skipped: " + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
              + " (examples in the JSON's stats.input.examples)", file=sys.stderr)


# -- report ---------------------------------------------------------------------------------------------------------


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verdicts", required=True, help="what detect wrote (--out FILE)")
    parser.add_argument("--logs", help="the logs detect read: each session's requests drawn as a timeline")
    parser.add_argument("--fields", help="the real-time log field list, a,b,c (default: fields.txt of the folder)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--ledger", default="LEDGER.sqlite", help="the ledger named in the unrevoke commands")
    parser.add_argument("--store", default="STORE.json",
                        help="the edge store named in the unrevoke commands; a local one that exists is read for "
                             "each revocation's entry")
    parser.add_argument("--config", help="detection config JSON (its thresholds on the score chart)")


def _report(args: argparse.Namespace) -> int:
    from tools.verdict_report import ReportInputError, build_report, read_verdicts, write_report

    output_file(args.out, inputs=[args.verdicts])
    try:
        document = read_verdicts(args.verdicts)
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None
    config = _config(args)
    features = None
    window = (document.get("stats") or {}).get("window") or {}
    if args.logs and isinstance(window, dict) and window.get("end") and window.get("minutes"):
        from detection.detect import detect  # the window again, for the features of every session (near misses)

        features = detect(args.logs, fields=args.fields, window_minutes=window["minutes"], now=window["end"],
                          config=config, keep_features=True).features
    report = build_report(document, args.logs, fields=args.fields, ledger=args.ledger, store=args.store,
                          revocations=_store_revocations(args.store), config=config, features=features)
    path = write_report(args.out, report)
    print(f"wrote {path}: {len(document['sessions'])} flagged sessions", file=sys.stderr)
    return EXIT_OK


def _store_revocations(store: str) -> dict[str, str] | None:
    """The ``r:`` entries of a local edge store that exists (what the report shows beside each session), else None."""
    if not store.lower().endswith(".json") or not Path(store).is_file():
        return None
    from edge.store import open_store

    try:
        return {key[2:]: value for key, value in open_store(store).items("r:").items()}
    except EdgeStoreError as exc:
        raise UsageError(f"cannot read the edge store {store}: {exc}") from None


# -- replay ---------------------------------------------------------------------------------------------------------


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", required=True, help="a log file or folder (TSV, gzip, Firehose folders, Parquet)")
    parser.add_argument("--fields", help="the real-time log field list, a,b,c (default: fields.txt of the folder)")
    parser.add_argument("--batch-seconds", type=_positive_seconds, default=1.0,
                        help="the event source's batching window in seconds (1)")
    parser.add_argument("--now", type=_epoch, help="stop the replay here, epoch seconds (default: after the last record)")
    parser.add_argument("--out", required=True, help="output file (- for stdout)")
    parser.add_argument("--config", help="detection config JSON (thresholds, allow-lists, monitor mode)")


def _replay(args: argparse.Namespace) -> int:
    from detection.stream.replay import replay

    _check_out(args)
    run = replay(args.logs, fields=args.fields, batch_seconds=args.batch_seconds, now=args.now, config=_config(args))
    _write_json(run.to_dict(), args.out, sys.stdout)
    stats, delays = run.stats, run.stats["seconds_to_revoke"]
    print(
        f"{stats['records']} records in {stats['batches']} batches, {stats['revoked']} revoked by the stream "
        f"(first request to revocation p50 {delays['p50']} s, p95 {delays['p95']} s; {stats['seconds']:.1f} s)",
        file=sys.stderr,
    )
    return EXIT_OK


# -- run: the workflow's steps on your own logs, with the local twins ------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _detect_arguments(parser)
    parser.add_argument("--ledger", required=True, help="LEDGER.sqlite: the local twin of the DynamoDB ledger")
    parser.add_argument("--store", required=True, help="STORE.json: the local twin of the edge KeyValueStore")
    parser.add_argument("--create", action="store_true", help="start a new ledger or store when the file is not "
                        "there (without it a missing file is an error, not an empty ledger)")


def _run(args: argparse.Namespace) -> int:
    from detection.workflow.steps import publish_summary, run_local
    from edge.store import open_store
    from revocation.ledger import open_ledger

    _check_out(args)
    store = open_store(revocation_cli.existing_or_created(args.store, "edge store", args.create))
    with open_ledger(revocation_cli.existing_or_created(args.ledger, "ledger", args.create)) as ledger:
        run = run_local(args.logs, ledger, store, config=_config(args), now=args.now, window_minutes=args.window,
                        fields=args.fields)
    pages = [p.to_dict() for p in run.pages]
    summary = {
        "run_id": run.run_id,
        "window": list(run.window),
        "flagged": len(run.score.verdicts),
        "recorded": sum(p.get("recorded", 0) for p in pages),
        "revoked": sum(p.get("revoked", 0) for p in pages),
        "published": publish_summary(run.published),
        "sessions": [v.to_dict() for v in run.score.verdicts],
    }
    _write_json(summary, args.out, sys.stdout)
    print(f"run {run.run_id}: {summary['flagged']} flagged, {summary['revoked']} revoked and recorded in "
          f"{args.ledger}; the edge store {args.store} holds {run.published.published} revocations", file=sys.stderr)
    _warn_about_input(run.detect_stats.get("input", {}))
    return EXIT_OK


# -- generate -------------------------------------------------------------------------------------------------------


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--sessions", type=int, required=True, help="playback sessions")
    parser.add_argument("--minutes", type=float, required=True, help="time span in minutes")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--start", type=_epoch, help="start epoch (default 2026-01-01T00:00:00Z)")
    parser.add_argument("--pirate-share", type=float, help="fraction of pirate sessions (default about 0.03)")
    parser.add_argument("--mix", default="generator-v1", help="the kinds and their shares: generator-v1 (default) "
                        "or audience-v2 (adds in-flight, relay rotation, gateways, satellite, roaming, speed "
                        "watchers and slow rippers)")


def _generate(args: argparse.Namespace) -> int:
    from tools.generate import DEFAULT_START_EPOCH, generate_corpus

    if args.sessions < 1 or args.minutes <= 0 or not math.isfinite(args.minutes):
        raise UsageError("--sessions must be at least 1 and --minutes positive")
    if args.pirate_share is not None and not 0 <= args.pirate_share <= 1:
        raise UsageError("--pirate-share must be between 0 and 1")
    output_folder(args.out, marker=".written-by-generate", command="python -m detection generate")
    with progress_bar("generating", "records", scale=True) as progress:
        summary = generate_corpus(
            args.out,
            args.sessions,
            args.minutes,
            args.seed,
            start_epoch=args.start if args.start is not None else DEFAULT_START_EPOCH,
            pirate_share=args.pirate_share,
            mix=args.mix,
            progress=progress,
        )
    print(json.dumps(summary.to_dict(), indent=2))
    return EXIT_OK


# -- convert --------------------------------------------------------------------------------------------------------


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", required=True, help="TSV log file or folder")
    parser.add_argument("--out", required=True, help="Parquet output folder")
    parser.add_argument("--fields", help="the real-time log field list (default: fields.txt of the folder)")


def _convert(args: argparse.Namespace) -> int:
    from detection.logs.convert import convert_to_parquet

    if not Path(args.logs).exists():
        raise UsageError(f"log input not found: {args.logs}")
    output_folder(args.out, marker=".written-by-convert", command="python -m detection convert", inputs=[args.logs])
    with progress_bar("converting", "files") as progress:
        report = convert_to_parquet(args.logs, args.out, fields=args.fields, progress=progress)
    print(json.dumps(report.to_dict(), indent=2))
    return EXIT_OK


# -- evaluate -------------------------------------------------------------------------------------------------------


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="a labelled corpus folder (python -m detection generate)")
    source.add_argument("--suite", help="a suite file: several seeds generated and evaluated, added up "
                                        "(tools/suites/generator-v1.json)")
    parser.add_argument("--work", default="out/suites", help="where a suite's corpora are generated (out/suites)")
    parser.add_argument("--logs", help="its logs when elsewhere (e.g. a Parquet conversion)")
    parser.add_argument("--window", type=_positive_minutes, default=10.0, help="window length in minutes (10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--config", help="detection config JSON")


def _evaluate(args: argparse.Namespace) -> int:
    if args.suite:
        return _evaluate_suite(args)
    from tools.evaluate import evaluate_corpus, format_table

    evaluation = evaluate_corpus(args.corpus, window_minutes=args.window, config=_config(args), logs=args.logs)
    if args.json:
        _write_json(evaluation.to_dict(), None, sys.stdout)
    else:
        print(format_table(evaluation))
    return EXIT_OK


def _evaluate_suite(args: argparse.Namespace) -> int:
    from tools.suite import SuiteError, format_suite, run_suite

    try:
        result = run_suite(args.suite, args.work, log=lambda text: print(text, file=sys.stderr))
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        _write_json(result.to_dict(), None, sys.stdout)
    else:
        print(format_suite(result))
    return EXIT_OK


# -- networks -------------------------------------------------------------------------------------------------------


def _networks_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the registry the config gives: version, entries per class (JSON)",
                              description="The network registry of the detection config: its version and entries.")
    show.add_argument("--config", help="detection config JSON (default: the shipped registry)")
    show.add_argument("--entries", action="store_true", help="list every entry, not only the counts")
    show.add_argument("--lookup", metavar="ASN_OR_IP", action="append", default=[],
                      help="classify an ASN (AS13335 or 13335) or an address; repeatable")
    relay = actions.add_parser(
        "import-private-relay",
        help="turn Apple's iCloud Private Relay egress list (CSV) into a registry file for networks.files",
        description="Write a registry file of Apple's published Private Relay egress ranges "
                    "(https://mask-api.icloud.com/egress-ip-ranges.csv), for the config's networks.files.",
    )
    relay.add_argument("--csv", required=True, help="Apple's egress-ip-ranges.csv, downloaded")
    relay.add_argument("--out", required=True, help="the registry file to write (JSON)")


def _networks(args: argparse.Namespace) -> int:
    from detection.networks import RegistryError

    try:
        if args.action == "import-private-relay":
            from detection.networks.private_relay import import_egress_csv

            out = Path(args.out)
            if out.is_dir() or not out.parent.is_dir():
                raise UsageError(f"--out must be a file in an existing folder, not {args.out}")
            print(json.dumps(import_egress_csv(Path(args.csv), out), indent=2))
            return EXIT_OK
        registry = _config(args).networks.registry
        document: dict[str, Any] = {"version": registry.version, "classes": registry.counts()}
        if args.lookup:
            document["lookup"] = {item: _lookup(registry, item) for item in args.lookup}
        if args.entries:
            document["entries"] = [entry.plain() for entry in registry.entries]
        _write_json(document, None, sys.stdout)
        return EXIT_OK
    except RegistryError as exc:
        raise UsageError(str(exc)) from None


def _lookup(registry: Any, item: str) -> str | None:
    text = item.strip()
    number = text[2:] if text.upper().startswith("AS") else text
    if number.isdigit():
        found = registry.classify_asn(int(number))
    else:
        import ipaddress

        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise UsageError(f"--lookup takes an ASN (AS13335) or an IP address, not {item!r}") from None
        found = registry.classify_ip(text)
    return found.value if found else None


# -- demo -----------------------------------------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from tools.demo import add_arguments  # light at import: the heavy parts load when the demo runs

    add_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from tools.demo import main as run_demo

    return run_demo(args)


COMMANDS: dict[str, Command] = {
    "detect": (_detect_command_arguments, _detect, "detect pirated sessions in real-time logs (JSON verdicts)"),
    "replay": (_replay_arguments, _replay, "replay logs through the stream consumer on a simulated clock"),
    "report": (_report_arguments, _report, "an HTML report of detect's verdicts, for your own logs"),
    "run": (_run_arguments, _run, "the workflow's steps on your own logs: detect, record in a ledger, publish to a "
                                  "store (the local twins)"),
    "generate": (_generate_arguments, _generate, "write a labelled synthetic corpus"),
    "convert": (_convert_arguments, _convert, "convert TSV logs to Parquet"),
    "evaluate": (_evaluate_arguments, _evaluate, "evaluate detection and the baseline rule on a labelled corpus"),
    "networks": (_networks_arguments, _networks, "show the network registry; import Apple's Private Relay ranges"),
    "demo": (_demo_arguments, _demo, "run the whole pipeline locally on generated traffic; write an HTML report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detection", description="Piracy detection on real-time logs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _run, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    revocation_cli.register(sub)  # revoke, unrevoke, revocations, flagged: each sets its own `run`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from detection.logs.reader import InputError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed "error: ..." and the usage
        return int(exc.code) if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command not in COMMANDS:
        return int(args.run(args))  # the revocation commands report their own errors (exit 2)
    try:
        return COMMANDS[args.command][1](args)
    except (UsageError, OutputPathError, InputError, QueryError, ConfigError, RevocationError, LedgerError,
            EdgeStoreError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # e.g. the generator's own argument checks
        if args.command in ("generate", "convert"):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    except BrokenPipeError:  # stdout closed early (| head)
        return EXIT_OK
