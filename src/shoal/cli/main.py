"""The `shoal` command.

    shoal serve [--config FILE] [--bind HOST:PORT] [--workers N] [--allow-non-loopback]
    shoal check-config FILE
    shoal users create NAME --role ROLE [--password-stdin] [--config FILE]
    shoal users list | disable NAME | enable NAME | delete NAME  [--config FILE]
    shoal users set-roles NAME --role ROLE | set-password NAME [--password-stdin]  [--config FILE]
    shoal apikeys create --role ROLE [--name N] | list | revoke ID  [--config FILE]
    shoal openapi [--config FILE]
    shoal import RESOURCE FILE.jsonl [--config FILE] [--batch-size N] [--rejects FILE] [--owner ID]
    shoal from-eve SETTINGS.py [--output FILE]

Exit status: 0 on success, 1 when the command failed, 2 for a bad invocation
or an invalid config.

Each command imports what it needs when it runs, so ``shoal --help`` and the
light commands start fast and never load the server's stack.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ..version import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


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


def _admin(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from .admin import AdminError

        try:
            return run(args)
        except AdminError as error:
            print(f"shoal {args.command}: {error}", file=sys.stderr)
            return error.status

    return handler


@_admin
def _users_create(args: argparse.Namespace) -> int:
    from .admin import create_user, read_password

    password = read_password(args.password_stdin)
    print(create_user(args.config, args.name, args.role, password))
    return EXIT_OK


@_admin
def _users_list(args: argparse.Namespace) -> int:
    from .admin import list_users

    for user in list_users(args.config):
        state = "disabled" if user.disabled else "enabled"
        print(f"{user.id}  {state:8}  {user.name}  roles: {', '.join(sorted(user.roles))}")
    return EXIT_OK


_CUT_OFF = "its tokens and sessions are refused from now on, on every instance"


@_admin
def _users_disable(args: argparse.Namespace) -> int:
    from .admin import disable_user

    user = disable_user(args.config, args.name)
    print(f"disabled user {user.name} ({user.id}); {_CUT_OFF}")
    return EXIT_OK


@_admin
def _users_enable(args: argparse.Namespace) -> int:
    from .admin import enable_user

    user = enable_user(args.config, args.name)
    print(f"enabled user {user.name} ({user.id}); it can log in again")
    return EXIT_OK


@_admin
def _users_delete(args: argparse.Namespace) -> int:
    from .admin import delete_user

    user = delete_user(args.config, args.name)
    print(f"deleted user {user.name} ({user.id}); {_CUT_OFF}")
    return EXIT_OK


@_admin
def _users_set_roles(args: argparse.Namespace) -> int:
    from .admin import set_roles

    user = set_roles(args.config, args.name, args.role)
    roles = ", ".join(sorted(user.roles))
    print(f"user {user.name} ({user.id}) now has roles: {roles}; {_CUT_OFF} (log in again)")
    return EXIT_OK


@_admin
def _users_set_password(args: argparse.Namespace) -> int:
    from .admin import read_password, set_password

    password = read_password(args.password_stdin)
    user = set_password(args.config, args.name, password)
    print(f"set the password of user {user.name} ({user.id}); {_CUT_OFF}")
    return EXIT_OK


@_admin
def _apikeys_create(args: argparse.Namespace) -> int:
    from .admin import create_api_key

    key, info = create_api_key(args.config, args.name, args.role)
    print(f"created API key {info.id} ({info.name}) with roles: {', '.join(sorted(info.roles))}")
    print("The key is shown once; store it now. Send it as the X-API-Key header:")
    print(key)
    return EXIT_OK


@_admin
def _apikeys_list(args: argparse.Namespace) -> int:
    from .admin import list_api_keys

    for info in list_api_keys(args.config):
        state = "revoked" if info.revoked else "active"
        print(f"{info.id}  {state:7}  {info.name}  roles: {', '.join(sorted(info.roles))}")
    return EXIT_OK


@_admin
def _apikeys_revoke(args: argparse.Namespace) -> int:
    from .admin import revoke_api_key

    if not revoke_api_key(args.config, args.id):
        print(f"shoal apikeys: no API key with id {args.id}", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked API key {args.id}")
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config file (default: $SHOAL_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal", description="A fast, async REST data API for MongoDB."
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API server (hypercorn)")
    _add_config(serve)
    serve.add_argument("--bind", metavar="HOST:PORT", help="address to listen on")
    serve.add_argument("--workers", type=_positive_int, metavar="N", help="worker processes")
    serve.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let a development config listen on an address other machines can reach "
        "(refused otherwise)",
    )
    serve.set_defaults(handler=_serve)

    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    stdin_help = (
        "read the password from stdin (one line) instead of a prompt; "
        "8 to 1024 characters either way"
    )
    create_user = users.add_parser("create", help="create a user (password from a prompt)")
    create_user.add_argument("name", metavar="NAME")
    create_user.add_argument("--role", action="append", required=True, help="repeatable")
    create_user.add_argument("--password-stdin", action="store_true", help=stdin_help)
    _add_config(create_user)
    create_user.set_defaults(handler=_users_create)
    list_users = users.add_parser("list", help="list users (never their passwords)")
    _add_config(list_users)
    list_users.set_defaults(handler=_users_list)
    cut_off = "; ends the user's tokens and sessions on every instance at once"
    for action, handler, summary in (
        ("disable", _users_disable, "refuse a user's logins" + cut_off),
        ("enable", _users_enable, "let a disabled user log in again"),
        ("delete", _users_delete, "delete a user" + cut_off),
    ):
        command = users.add_parser(action, help=summary)
        command.add_argument("name", metavar="NAME")
        _add_config(command)
        command.set_defaults(handler=handler)
    roles = users.add_parser("set-roles", help="replace a user's roles" + cut_off)
    roles.add_argument("name", metavar="NAME")
    roles.add_argument("--role", action="append", required=True, help="repeatable")
    _add_config(roles)
    roles.set_defaults(handler=_users_set_roles)
    password = users.add_parser("set-password", help="set a user's password" + cut_off)
    password.add_argument("name", metavar="NAME")
    password.add_argument("--password-stdin", action="store_true", help=stdin_help)
    _add_config(password)
    password.set_defaults(handler=_users_set_password)

    apikeys = commands.add_parser("apikeys", help="manage API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create_key = apikeys.add_parser("create", help="create a key (printed once)")
    create_key.add_argument("--role", action="append", required=True, help="repeatable")
    create_key.add_argument("--name", default="api key", help="what the key is for")
    _add_config(create_key)
    create_key.set_defaults(handler=_apikeys_create)
    list_keys = apikeys.add_parser("list", help="list keys (never the keys themselves)")
    _add_config(list_keys)
    list_keys.set_defaults(handler=_apikeys_list)
    revoke_key = apikeys.add_parser("revoke", help="revoke a key at once")
    revoke_key.add_argument("id", metavar="ID")
    _add_config(revoke_key)
    revoke_key.set_defaults(handler=_apikeys_revoke)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_check_config)

    openapi = commands.add_parser(
        "openapi",
        help="print the OpenAPI document as JSON",
        description="Print the OpenAPI 3.1 document that /openapi.json serves for this "
        "config. Connects to nothing.",
    )
    _add_config(openapi)
    openapi.set_defaults(handler=_openapi)

    from_eve = commands.add_parser(
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
