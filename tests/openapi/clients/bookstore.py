"""The bookstore scenario, written against the Python client that
openapi-python-client generates from Shoal's document (``bookstore_client``).

``tests/openapi/test_generated_clients.py`` generates the client into a
temporary folder, checks this file against it with ``mypy --strict``, imports
it and calls ``run``. It returns what it saw; the test holds both clients' (this
one's and ``bookstore.ts``'s) to the same expectations.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from bookstore_client import AuthenticatedClient, Client
from bookstore_client.api.auth import post_login
from bookstore_client.api.books import (
    create_books,
    delete_books_item,
    get_books_item,
    list_books,
    update_books_item,
)
from bookstore_client.models import (
    BooksBulkWrite,
    BooksChanges,
    BooksInput,
    BooksItem,
    BooksPage,
    BooksWrite,
    Error,
    LoginRequest,
    TokenResponse,
    ValidationError,
)
from bookstore_client.types import Response, Unset

T = TypeVar("T")


def parsed(answer: Response[Any], kind: type[T]) -> T:
    """The answer's body, as the type the document promised for its status."""
    body = answer.parsed
    if not isinstance(body, kind):
        raise TypeError(f"{answer.status_code}: expected {kind.__name__}, got {body!r}")
    return body


def error(answer: Response[Any]) -> dict[str, Any]:
    """An error answer, read through its typed envelope."""
    envelope = parsed(answer, Error)
    return {"status": answer.status_code, "code": envelope.field_error.code}


def issues(failure: ValidationError) -> list[str]:
    found = failure.field_issues
    return [] if isinstance(found, Unset) else sorted(found.additional_properties)


def run(base_url: str, username: str, password: str, tag: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

    refused = post_login.sync_detailed(
        client=anonymous, body=LoginRequest(username=username, password=password + "?")
    )
    seen["wrong_password"] = error(refused)
    tokens = parsed(
        post_login.sync_detailed(
            client=anonymous, body=LoginRequest(username=username, password=password)
        ),
        TokenResponse,
    )
    seen["token_type"] = tokens.token_type
    client = AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )

    # Create one book, then three in one request.
    created = create_books.sync_detailed(
        client=client,
        body=BooksInput(title=f"Dune {tag}", year=1965, tags=[tag], in_stock=False),
    )
    ack = parsed(created, BooksWrite)
    seen["created"] = {"status": created.status_code, "location": "Location" in created.headers}
    book_id, etag = ack.field_id, ack.field_etag
    more = [("Kindred", 1979), ("Solaris", 1961), ("Ubik", 1969)]
    bulk = create_books.sync_detailed(
        client=client,
        body=[BooksInput(title=f"{title} {tag}", year=year, tags=[tag]) for title, year in more],
    )
    seen["bulk"] = [item.field_status for item in parsed(bulk, BooksBulkWrite).field_items]
    invalid_new = create_books.sync_detailed(client=client, body=BooksInput(title="", year=-1))
    refused_new = parsed(invalid_new, ValidationError)
    seen["invalid_create"] = {"status": invalid_new.status_code, "issues": issues(refused_new)}

    # Read it back.
    read = get_books_item.sync_detailed(book_id, client=client)
    book = parsed(read, BooksItem)
    seen["read"] = {
        "title": book.title,
        "year": book.year,
        "in_stock": book.in_stock,
        "etag_header": read.headers["ETag"] == f'"{book.field_etag}"',
    }

    # List with where, sort and pages.
    seen["pages"] = []
    for number in (1, 2):
        listed = list_books.sync_detailed(
            client=client,
            where=json.dumps({"tags": tag}),
            sort="-year",
            max_results=3,
            page=number,
        )
        page = parsed(listed, BooksPage)
        total = page.field_meta.total
        seen["pages"].append(
            {
                "years": [item.year for item in page.field_items],
                "total": None if isinstance(total, Unset) else total,
                "next": not isinstance(page.field_links.next_, Unset),
            }
        )

    # A conditional PATCH: the year only; what it does not name stays as it was.
    patched = update_books_item.sync_detailed(
        book_id, client=client, body=BooksChanges(year=1966), if_match=etag
    )
    new_etag = parsed(patched, BooksWrite).field_etag
    seen["patched"] = {"status": patched.status_code, "etag_changed": new_etag != etag}
    after = parsed(get_books_item.sync_detailed(book_id, client=client), BooksItem)
    seen["after_patch"] = {"year": after.year, "in_stock": after.in_stock}

    # Typed errors: a stale ETag (412), a value the schema refuses (422).
    stale = update_books_item.sync_detailed(
        book_id, client=client, body=BooksChanges(year=1967), if_match=etag
    )
    seen["stale"] = error(stale)
    invalid = update_books_item.sync_detailed(
        book_id, client=client, body=BooksChanges(year=-1), if_match=new_etag
    )
    failure = parsed(invalid, ValidationError)
    seen["invalid_patch"] = {
        "status": invalid.status_code,
        "code": failure.field_error.code,
        "issues": issues(failure),
    }

    # Delete it; then it is not found (404).
    deleted = delete_books_item.sync_detailed(book_id, client=client, if_match=new_etag)
    seen["deleted"] = deleted.status_code
    seen["missing"] = error(get_books_item.sync_detailed(book_id, client=client))
    return seen
