"""The `shoal` command.

    shoal serve [--config FILE] [--bind HOST:PORT] [--workers N]
    shoal check-config FILE
    shoal import RESOURCE FILE.jsonl [--config FILE] [--batch-size N] [--rejects FILE]

Exit status: 0 on success, 1 when the command failed, 2 for a bad invocation
or an invalid config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .config import ConfigError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _serve(args: argparse.Namespace) -> int:
    from .server import ServeError, ServeOptions, serve

    try:
        return serve(ServeOptions(config=args.config, bind=args.bind, workers=args.workers))
    except ServeError as error:
        print(f"shoal serve: {error}", file=sys.stderr)
        return EXIT_USAGE


def _check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    names = ", ".join(settings.resources) or "none"
    print(f"{args.file}: OK ({len(settings.resources)} resources: {names})")
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from .importer import DEFAULT_BATCH_SIZE, ImportOptions, ImportUsageError, run_import

    # A command-line tool, not a server: Shoal's warnings as plain lines on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    options = ImportOptions(
        resource=args.resource,
        file=args.file,
        config=args.config,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
        rejects=args.rejects,
    )
    try:
        return run_import(options)
    except ImportUsageError as error:
        print(f"shoal import: {error}", file=sys.stderr)
        return EXIT_USAGE


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal", description="A fast, async REST data API for MongoDB."
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API server (hypercorn)")
    serve.add_argument("--config", help="config file (default: $SHOAL_CONFIG)")
    serve.add_argument("--bind", metavar="HOST:PORT", help="address to listen on")
    serve.add_argument("--workers", type=_positive_int, metavar="N", help="worker processes")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_check_config)

    load = commands.add_parser(
        "import",
        help="import a JSON Lines file into a resource",
        description="Import a JSON Lines file (one JSON object a line) into a resource. "
        "Each line is validated as a POST would be; lines with an _id replace the "
        "document with that id, so re-running a file does not duplicate them. "
        "Exit status: 0 all imported, 1 some lines rejected, 2 bad invocation or config.",
    )
    load.add_argument("resource", metavar="RESOURCE", help="a resource of the config")
    load.add_argument("file", metavar="FILE.jsonl", help="the JSON Lines file")
    load.add_argument("--config", help="config file (default: $SHOAL_CONFIG)")
    load.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="lines per bulk write (default: 500)",
    )
    load.add_argument(
        "--rejects", metavar="FILE", help="write every rejected line with its reason (JSONL)"
    )
    load.set_defaults(handler=_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
