"""The ``shoal users`` and ``shoal apikeys`` actions: each calls the account
operation of ``admin.py`` (imported when the action runs) and prints what it
did; an ``AdminError`` becomes one line on stderr and its exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .output import EXIT_FAILED, EXIT_OK


def _admin(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from .admin import AdminError

        try:
            return run(args)
        except AdminError as error:
            print(f"{args.parser.prog}: {error}", file=sys.stderr)
            return error.status

    return handler


@_admin
def users_create(args: argparse.Namespace) -> int:
    from .admin import create_user, parse_data, read_password

    data = parse_data(args.data)
    print(
        create_user(
            args.config, args.name, args.role, lambda: read_password(args.password_stdin), data
        )
    )
    return EXIT_OK


@_admin
def users_set_data(args: argparse.Namespace) -> int:
    from .admin import parse_data, set_data

    data = parse_data(args.data)
    user = set_data(args.config, args.name, data)
    print(f"set the data of user {user.name} ({user.id}): {', '.join(sorted(data))}")
    return EXIT_OK


@_admin
def users_list(args: argparse.Namespace) -> int:
    from .admin import list_users

    for user in list_users(args.config):
        state = "disabled" if user.disabled else "enabled"
        print(f"{user.id}  {state:8}  {user.name}  roles: {', '.join(sorted(user.roles))}")
    return EXIT_OK


@_admin
def users_disable(args: argparse.Namespace) -> int:
    from .admin import disable_user

    change = disable_user(args.config, args.name)
    print(f"disabled user {change.user.name} ({change.user.id}); {change.cut_off}")
    return EXIT_OK


@_admin
def users_enable(args: argparse.Namespace) -> int:
    from .admin import enable_user

    user = enable_user(args.config, args.name).user
    print(f"enabled user {user.name} ({user.id}); it can log in again")
    return EXIT_OK


@_admin
def users_delete(args: argparse.Namespace) -> int:
    from .admin import delete_user

    change = delete_user(args.config, args.name)
    print(f"deleted user {change.user.name} ({change.user.id}); {change.cut_off}")
    return EXIT_OK


@_admin
def users_set_roles(args: argparse.Namespace) -> int:
    from .admin import set_roles

    change = set_roles(args.config, args.name, args.role)
    user, roles = change.user, ", ".join(sorted(change.user.roles))
    print(f"user {user.name} ({user.id}) now has roles: {roles}; {change.cut_off} (log in again)")
    return EXIT_OK


@_admin
def users_set_password(args: argparse.Namespace) -> int:
    from .admin import read_password, set_password

    change = set_password(args.config, args.name, lambda: read_password(args.password_stdin))
    print(f"set the password of user {change.user.name} ({change.user.id}); {change.cut_off}")
    return EXIT_OK


@_admin
def apikeys_create(args: argparse.Namespace) -> int:
    from .admin import create_api_key

    key, info = create_api_key(args.config, args.name, args.role)
    print(f"created API key {info.id} ({info.name}) with roles: {', '.join(sorted(info.roles))}")
    print("The key is shown once; store it now. Send it as the X-API-Key header:")
    print(key)
    return EXIT_OK


@_admin
def apikeys_list(args: argparse.Namespace) -> int:
    from .admin import list_api_keys

    for info in list_api_keys(args.config):
        state = "revoked" if info.revoked else "active"
        print(f"{info.id}  {state:7}  {info.name}  roles: {', '.join(sorted(info.roles))}")
    return EXIT_OK


@_admin
def apikeys_revoke(args: argparse.Namespace) -> int:
    from .admin import revoke_api_key

    if not revoke_api_key(args.config, args.id):
        print(f"{args.parser.prog}: no API key with id {args.id}", file=sys.stderr)
        return EXIT_FAILED
    # Keys are looked up in MongoDB on every request, Redis or not.
    print(f"revoked API key {args.id}; it is refused from now on, on every instance")
    return EXIT_OK
