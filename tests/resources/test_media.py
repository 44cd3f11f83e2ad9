"""The content type a media field's file is stored with, and when it is a lie
(``resources/media.py``): what the part declares, checked against the first
bytes' signature."""

from __future__ import annotations

import pytest

from shoal.config import MediaField
from shoal.errors import UnsupportedMediaType
from shoal.resources.media import checked_type

PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)
GIF = b"GIF89a" + bytes(10)
ZIP = b"PK\x03\x04" + bytes(12)
TEXT = b"plain words here"
IMAGES = MediaField("photo", content_types=("image/png", "image/jpeg"))
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_a_declared_type_whose_bytes_agree_is_kept() -> None:
    assert checked_type(IMAGES, "image/png", PNG) == "image/png"
    assert checked_type(MediaField("any"), "text/plain; charset=utf-8", TEXT) == "text/plain"


def test_no_type_or_the_generic_one_takes_the_signatures() -> None:
    assert checked_type(IMAGES, None, PNG) == "image/png"
    assert checked_type(IMAGES, "application/octet-stream", PNG) == "image/png"
    assert checked_type(MediaField("any"), None, TEXT) == "application/octet-stream"


@pytest.mark.parametrize(
    ("field", "declared", "head", "message"),
    [
        (IMAGES, "image/png", GIF, r"not image/png \(they are image/gif\)"),
        (IMAGES, "image/gif", GIF, "image/gif is not allowed"),
        (IMAGES, None, TEXT, "application/octet-stream is not allowed"),
        (MediaField("any"), "application/pdf", TEXT, "not application/pdf"),
        (MediaField("notes", content_types=("text/plain",)), "text/plain", PNG, "are image/png"),
    ],
)
def test_a_lie_is_refused(
    field: MediaField, declared: str | None, head: bytes, message: str
) -> None:
    with pytest.raises(UnsupportedMediaType, match=message):
        checked_type(field, declared, head)


def test_types_that_share_a_containers_signature_are_not_lies() -> None:
    documents = MediaField("doc", content_types=(DOCX,))
    assert checked_type(documents, DOCX, ZIP) == DOCX
