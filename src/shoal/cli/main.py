"""The `shoal` command.

    shoal serve [--config FILE] [--bind HOST:PORT] [--workers N] [--allow-non-loopback]
    shoal check-config FILE [--explain]
    shoal users create NAME --role ROLE [--password-stdin] [--config FILE]
    shoal users list | disable NAME | enable NAME | delete NAME  [--config FILE]
    shoal users set-roles NAME --role ROLE | set-password NAME [--password-stdin]  [--config FILE]
    shoal users set-data NAME --data KEY=VALUE  [--config FILE]
    shoal apikeys create --role ROLE [--name N] | list | revoke ID  [--config FILE]
    shoal openapi [--config FILE]
    shoal import RESOURCE FILE.jsonl [--config FILE] [--batch-size N] [--rejects FILE] [--owner ID]
    shoal from-eve SETTINGS.py [--output FILE]
    shoal media gc [--grace SECONDS] [--dry-run] [--config FILE]

Exit status: 0 on success, 1 when the command failed, 2 for a bad invocation
or an invalid config, 130 when interrupted (Ctrl-C).

Each command imports what it needs when it runs, so ``shoal --help`` and the
light commands start fast and never load the server's stack.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from ..version import __version__
from . import accounts
from .output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def _serve(args: argparse.Namespace) -> int:
    from .serve import ServeError, ServeOptions, serve

    try:
        options = ServeOptions(
            config=args.config,
            bind=args.bind,
            workers=args.workers,
            allow_non_loopback=args.allow_non_loopback,
        )
        return serve(options)
    except ServeError as error:
        print(f"shoal serve: {error}", file=sys.stderr)
        return error.status


def _check_config(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_settings

    try:
        settings = load_settings(args.file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if args.explain:
        from ..config.explain import explain

        print(explain(settings), end="")
        return EXIT_OK
    names = ", ".join(settings.resources) or "none"
    print(f"{args.file}: OK ({len(settings.resources)} resources: {names})")
    return EXIT_OK


def _from_eve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import ConfigError, load_settings
    from .eve import load_eve_settings, translate

    source = Path(args.settings)
    if not source.is_file():
        print(f"shoal from-eve: {source}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = translate(load_eve_settings(source))
    except Exception as error:  # the settings file is the user's Python
        print(f"shoal from-eve: {source} did not run: {error!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        try:
            Path(args.output).write_text(result.yaml(), encoding="utf-8")
        except OSError as error:
            print(f"shoal from-eve: cannot write {args.output}: {error}", file=sys.stderr)
            return EXIT_FAILED
    else:
        print(result.yaml(), end="")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        load_settings(result.config, env={})
    except ConfigError as error:
        print(f"the translation needs edits before Shoal takes it:\n{error}", file=sys.stderr)
        return EXIT_FAILED
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
        owner=args.owner,
    )
    try:
        return run_import(options)
    except ImportUsageError as error:
        print(f"shoal import: {error}", file=sys.stderr)
        return EXIT_USAGE


def _media_gc(args: argparse.Namespace) -> int:
    from .media import MediaError, collect

    try:
        done = collect(args.config, args.grace, dry_run=args.dry_run)
    except MediaError as error:
        print(f"shoal media gc: {error}", file=sys.stderr)
        return error.status
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{done.looked_at} file(s) older than {args.grace:g} s; {done.orphans} held by no "
        f"document; {verb} {done.orphans if args.dry_run else done.removed}"
    )
    return EXIT_OK


def _openapi(args: argparse.Namespace) -> int:
    import orjson

    from ..app import create_app
    from ..config import ConfigError, load_settings
    from ..openapi import openapi_document

    try:
        settings = load_settings(args.config)
        # Building the app connects to nothing (that happens in before_serving),
        # but it runs the config's hooks functions, which may not load.
        app = create_app(settings)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    document = openapi_document(app)
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _bind(text: str) -> str:
    """A hypercorn address: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``."""
    if text.startswith(("unix:", "fd://")):
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        example = f"127.0.0.1:{text}" if text.isdigit() else "127.0.0.1:8000"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT; for instance --bind {example} (this machine only), "
            "[::1]:PORT for IPv6, or unix:PATH"
        )
    return text


#: The variables `shoal serve --help` lists: the config's ``ENV_OVERRIDES``
#: (a test keeps the two equal) and the files it reads.
SERVE_ENVIRONMENT = (
    ("SHOAL_CONFIG", "the config file, when --config is not given"),
    ("SHOAL_MONGODB_URI", "mongodb.uri; none: the embedded store (development only)"),
    ("SHOAL_MONGODB_DATABASE", "mongodb.database"),
    ("SHOAL_REDIS_URL", "redis.url; none: shared state in this process (--workers 1)"),
    ("SHOAL_SECRET_KEY", "secret_key (32 bytes or more with HS256)"),
    ("SHOAL_ENVIRONMENT", "environment: development, test or production"),
    ("SHOAL_TRUSTED_PROXIES", "trusted_proxies, comma-separated"),
    ("SHOAL_INSTANCE_NAME", "instance.name"),
    ("SHOAL_METRICS_BIND", "metrics.bind"),
    ("SHOAL_METRICS_TOKEN", "metrics.token"),
    ("SHOAL_TRACING_ENABLED", "tracing.enabled (then OTEL_* configure the traces)"),
    ("SHOAL_HYPERCORN_CONFIG", "the hypercorn.toml to read instead of ./hypercorn.toml"),
)


def _environment_help() -> str:
    width = max(len(name) for name, _ in SERVE_ENVIRONMENT)
    lines = [f"  {name:{width}}  {meaning}" for name, meaning in SERVE_ENVIRONMENT]
    return "environment (a variable named after a config key overrides the file's value):\n" + (
        "\n".join(lines)
    )


def _paragraphs(*texts: str) -> str:
    """Text for a parser with RawDescriptionHelpFormatter, wrapped as argparse would."""
    return "\n\n".join(textwrap.fill(text, width=79) for text in texts)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the config file (YAML); default: $SHOAL_CONFIG (one of the two is needed)",
    )


def _command_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A command's parser; it remembers itself, so that a mistyped option
    shows this command's usage (``main``)."""
    parser = commands.add_parser(name, **kwargs)
    parser.set_defaults(parser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="A fast, async REST data API for MongoDB: one YAML file describes "
        "the resources, `shoal serve` serves them.",
        epilog="`shoal COMMAND --help` describes a command. Exit status: 0 done, 1 failed, "
        "2 bad invocation or config, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    parser.set_defaults(parser=parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    serve = _command_parser(
        commands,
        "serve",
        help="run the API server (hypercorn)",
        description=_paragraphs(
            "Run the API server: the config's resources as a REST API (and the Data API, "
            "docs page and metrics the config turns on), in hypercorn worker processes, "
            "until Ctrl-C or SIGTERM. Server settings come from ./hypercorn.toml (or "
            "$SHOAL_HYPERCORN_CONFIG) when there is one; the options override it.",
            "With no MongoDB URI, a development config gets the embedded store; with no "
            "Redis URL, shared state stays in this one process.",
            "Exit status: 0 stopped, 1 could not listen, the embedded store did not "
            "start or the workers failed, 2 bad invocation or config, 130 interrupted "
            "while starting.",
        ),
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(serve)
    serve.add_argument(
        "--bind",
        type=_bind,
        metavar="HOST:PORT",
        help="the address to listen on (default: hypercorn.toml's bind, else 127.0.0.1:8000)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes (default: hypercorn.toml's workers, else 1); more than one "
        "needs Redis",
    )
    serve.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let a development config listen on an address other machines can reach "
        "(refused otherwise)",
    )
    serve.set_defaults(handler=_serve)

    users_parser = _command_parser(
        commands,
        "users",
        help="manage users",
        description="Create, list, disable, enable and delete users, set their roles "
        "and passwords.",
    )
    users = users_parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    stdin_help = (
        "read the password from stdin (one line) instead of a prompt; "
        "8 to 1024 characters either way"
    )
    create_user = _command_parser(users, "create", help="create a user (password from a prompt)")
    create_user.add_argument("name", metavar="NAME")
    create_user.add_argument("--role", action="append", required=True, help="repeatable")
    data_help = "key=value, a field of the user's data (%%%%user.data.<key> in rules); repeatable"
    create_user.add_argument("--password-stdin", action="store_true", help=stdin_help)
    create_user.add_argument("--data", action="append", metavar="KEY=VALUE", help=data_help)
    _add_config(create_user)
    create_user.set_defaults(handler=accounts.users_create)
    list_users = _command_parser(users, "list", help="list users (never their passwords)")
    _add_config(list_users)
    list_users.set_defaults(handler=accounts.users_list)
    cut_off = "; ends the user's tokens and sessions"
    for action, handler, summary in (
        ("disable", accounts.users_disable, "refuse a user's logins" + cut_off),
        ("enable", accounts.users_enable, "let a disabled user log in again"),
        ("delete", accounts.users_delete, "delete a user" + cut_off),
    ):
        command = _command_parser(users, action, help=summary)
        command.add_argument("name", metavar="NAME")
        _add_config(command)
        command.set_defaults(handler=handler)
    roles = _command_parser(users, "set-roles", help="replace a user's roles" + cut_off)
    roles.add_argument("name", metavar="NAME")
    roles.add_argument("--role", action="append", required=True, help="repeatable")
    _add_config(roles)
    roles.set_defaults(handler=accounts.users_set_roles)
    user_data = _command_parser(
        users, "set-data", help="set fields of a user's data (%%%%user.data in rules)"
    )
    user_data.add_argument("name", metavar="NAME")
    user_data.add_argument(
        "--data", action="append", required=True, metavar="KEY=VALUE", help=data_help
    )
    _add_config(user_data)
    user_data.set_defaults(handler=accounts.users_set_data)
    password = _command_parser(users, "set-password", help="set a user's password" + cut_off)
    password.add_argument("name", metavar="NAME")
    password.add_argument("--password-stdin", action="store_true", help=stdin_help)
    _add_config(password)
    password.set_defaults(handler=accounts.users_set_password)

    apikeys_parser = _command_parser(
        commands,
        "apikeys",
        help="manage API keys",
        description="Create, list and revoke API keys.",
    )
    apikeys = apikeys_parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    create_key = _command_parser(apikeys, "create", help="create a key (printed once)")
    create_key.add_argument("--role", action="append", required=True, help="repeatable")
    create_key.add_argument("--name", default="api key", help="what the key is for")
    _add_config(create_key)
    create_key.set_defaults(handler=accounts.apikeys_create)
    list_keys = _command_parser(apikeys, "list", help="list keys (never the keys themselves)")
    _add_config(list_keys)
    list_keys.set_defaults(handler=accounts.apikeys_list)
    revoke_key = _command_parser(apikeys, "revoke", help="revoke a key at once")
    revoke_key.add_argument("id", metavar="ID")
    _add_config(revoke_key)
    revoke_key.set_defaults(handler=accounts.apikeys_revoke)

    check = _command_parser(
        commands,
        "check-config",
        help="validate a config file",
        description="Validate a config file as `shoal serve` would, with the SHOAL_* "
        "variables applied. Exit status: 0 valid, 2 not (each problem on its own line).",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--explain",
        action="store_true",
        help="print, as rules (docs/how-to/rules.md), what each resource's public methods, "
        "allowed_* roles and auth_field amount to",
    )
    check.set_defaults(handler=_check_config)

    openapi = _command_parser(
        commands,
        "openapi",
        help="print the OpenAPI document as JSON",
        description="Print the OpenAPI 3.1 document that /openapi.json serves for this "
        "config. Connects to nothing.",
    )
    _add_config(openapi)
    openapi.set_defaults(handler=_openapi)

    from_eve = _command_parser(
        commands,
        "from-eve",
        help="translate an Eve settings file into a Shoal config",
        description="Print (or write with --output) the Shoal config of an Eve settings "
        "module: Eve's resource keys, Cerberus schemas as JSON Schema. What does not "
        "carry over is listed on stderr and atop the config. The file is run as Python. "
        "Exit status: 0 the config is valid, 1 it needs edits, 2 the file did not run.",
    )
    from_eve.add_argument("settings", metavar="SETTINGS.py", help="Eve's settings module")
    from_eve.add_argument("--output", metavar="FILE", help="write the config here")
    from_eve.set_defaults(handler=_from_eve)

    load = _command_parser(
        commands,
        "import",
        help="import a JSON Lines file into a resource",
        description="Import a JSON Lines file (one JSON object a line) into a resource. "
        "Each line is validated as a POST would be; lines with an _id replace the "
        "document with that id, so re-running a file does not duplicate them. "
        "Exit status: 0 all imported, 1 some lines rejected, 2 bad invocation or config.",
    )
    load.add_argument("resource", metavar="RESOURCE", help="a resource of the config")
    load.add_argument("file", metavar="FILE.jsonl", help="the JSON Lines file")
    _add_config(load)
    load.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="lines per bulk write (default: 500)",
    )
    load.add_argument(
        "--rejects", metavar="FILE", help="write every rejected line with its reason (JSONL)"
    )
    load.add_argument(
        "--owner",
        metavar="ID",
        help="for a resource with an auth_field: the user or API key id owning the documents",
    )
    load.set_defaults(handler=_import)

    media_parser = _command_parser(
        commands,
        "media",
        help="manage the files of media fields",
        description="The files of media fields, kept in GridFS.",
    )
    media = media_parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    gc = _command_parser(
        media,
        "gc",
        help="remove files no document holds",
        description="Remove the files uploaded more than --grace seconds ago that no "
        "document of the config's resources names (left by a crash between a write and "
        "the removal of the file it replaced, or by an upload whose write never came). "
        "Exit status: 0 done, 1 MongoDB failed, 2 bad invocation or config.",
    )
    gc.add_argument(
        "--grace",
        type=float,
        default=86_400.0,
        metavar="SECONDS",
        help="spare files younger than this (default: 86400, a day); keep it longer "
        "than any upload may last",
    )
    gc.add_argument("--dry-run", action="store_true", help="count the files, remove none")
    _add_config(gc)
    gc.set_defaults(handler=_media_gc)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The arguments, or the exit status of a usage error already reported."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # The parser of the command given: its usage, not the top level's, goes
    # with its errors.
    command: argparse.ArgumentParser = args.parser
    if unknown:
        known = [option for action in command._actions for option in action.option_strings]
        guesses = []
        for word in unknown:
            guess = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
            if word.startswith("-") and guess:
                guesses.append(f"{word} (did you mean {guess[0]}?)")
            else:
                guesses.append(word)
        command.error(f"unrecognized arguments: {' '.join(guesses)}")
    if getattr(args, "handler", None) is None:
        # `shoal` or `shoal users` alone: what there is to run.
        command.print_help(sys.stderr)
        return EXIT_USAGE
    if "config" in args and args.config is None and not os.environ.get("SHOAL_CONFIG"):
        print(
            f"{command.prog}: no config file given: pass --config FILE or set SHOAL_CONFIG "
            "(docs/tutorials/getting-started.md writes one)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return args


def main(argv: Sequence[str] | None = None) -> int:
    prog = "shoal"
    try:
        args = _parse(argv)
        if isinstance(args, int):
            return args
        prog = args.parser.prog
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        # Ctrl-C while a command runs (or at its password prompt): one line,
        # on a line of its own, and no traceback.
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
