"""Which files are clearly not a PDF: the one table of magic numbers.

Pure data and one function, imported by both sides: the server (notrace.uploads) refuses
such a file with a 415 before it reaches a child, and the child (open_pdf) says
"not_a_pdf" for it when it comes another way (the CLI, a pipeline step). Everything
else is left to the parser: a body qpdf recovers pages from is a PDF, wherever its
`%PDF-` header is, or without one.
"""
from __future__ import annotations

__all__ = ["MAGIC", "NAMES", "SNIFF_BYTES", "sniff"]

#: Leading bytes of formats that are clearly not PDF: the image types an operation may
#: declare in Inputs.media_types, and ZIP archives (office documents, EPUB, JAR...).
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),   # an empty archive
    (b"PK\x07\x08", "application/zip"),   # a spanned archive
)
#: How a refusal names each kind.
NAMES = {"image/png": "a PNG image", "image/jpeg": "a JPEG image", "image/gif": "a GIF image",
         "image/tiff": "a TIFF image", "image/webp": "a WebP image",
         "application/zip": "a ZIP archive"}
#: The leading bytes that decide a file's kind (the longest magic number above).
SNIFF_BYTES = 16


def sniff(head: bytes) -> str | None:
    """The media type of a file from its first SNIFF_BYTES bytes: a format recognised by
    its magic number, "application/pdf" if it starts with `%PDF-`, else None (unknown:
    for a PDF operation, the parser decides)."""
    for magic, media_type in MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None
