"""A hostile phase 1 for `safe`, as a child entry (tests/operations/test_safe.py): the
pixel stream an exploited renderer could write. The document's bytes name the attack;
every other job (phase 2, merge, other documents) runs the real entry."""
from __future__ import annotations

import json
import struct

from notrace.operations import child
from notrace.operations.pixelstream import MAGIC, STREAM_HEADER, pack_page_header, \
    pack_stream_header

#: A Letter page at 36 dpi (the tests' dpi): 306 x 396 pixels.
W, H, WPT, HPT = 306, 396, 612.0, 792.0
PIXELS = W * H * 3


def _page(width=W, height=H, wpt=WPT, hpt=HPT, pixels=PIXELS) -> bytes:
    return pack_page_header(width, height, wpt, hpt) + b"\xff" * pixels


#: attack name -> the stream phase 1 answers (the document has 1 page, batch from 0).
STREAMS = {
    "good": pack_stream_header(1, 0, 1) + _page(),
    "magic": b"NOTPIXEL" + pack_stream_header(1, 0, 1)[8:] + _page(),
    "short-pixels": pack_stream_header(1, 0, 1) + _page(pixels=PIXELS - 1),
    "trailing": pack_stream_header(1, 0, 1) + _page() + b"\0",
    "truncated": pack_stream_header(1, 0, 1),
    "truncated-header": pack_stream_header(1, 0, 1) + pack_page_header(W, H, WPT, HPT)[:10],
    "huge-dimensions": pack_stream_header(1, 0, 1) + _page(width=1 << 31, height=1 << 31,
                                                           pixels=16),
    "claims-2^62-bytes": pack_stream_header(1, 0, 1) + _page(width=1 << 31, height=1 << 30,
                                                             wpt=float(1 << 32),
                                                             hpt=float(1 << 31), pixels=16),
    "too-many-pages": pack_stream_header(1 << 31, 0, 1 << 31) + _page(),
    "count-beyond-document": pack_stream_header(1, 0, 2) + _page() + _page(),
    "wrong-first-page": pack_stream_header(3, 2, 1) + _page(),
    "no-pages": pack_stream_header(1, 0, 0),
    "size-not-the-pages": pack_stream_header(1, 0, 1) + _page(width=10, height=10,
                                                              pixels=300),
    "nan-points": pack_stream_header(1, 0, 1) + _page(wpt=float("nan")),
    # finite, but infinite once scaled to pixels (an OverflowError, a 500, before)
    "huge-points": pack_stream_header(1, 0, 1) + _page(wpt=1e308),
    "empty": b"",
}
assert all(s[:8] == MAGIC for name, s in STREAMS.items()
           if name not in ("magic", "empty")) and STREAM_HEADER.size == 20


#: A conversion whose merge child lies about the report: phase 1 leaves the word in its
#: first output, which phase 2 (mapping the memfd whole) sees and passes on in its PDF.
LYING = b"lying-merge"


def run(inputs: list[memoryview], params: dict) -> list:
    attack = bytes(inputs[0][:64]).decode("ascii", "replace") if inputs else ""
    operation = params.get("operation")
    if operation == "safe-pixels" and attack in STREAMS:
        return [json.dumps({"media_type": "application/octet-stream"}).encode(),
                STREAMS[attack]]
    if operation == "safe-pixels" and attack == LYING.decode():
        return [LYING, STREAMS["good"]]
    answer = child.run(inputs, params)
    if operation == "safe-build" and bytes(inputs[0][:len(LYING)]) == LYING:
        return [answer[0], bytes(answer[1]) + b"%" + LYING + b"\n"]
    if operation == "safe-merge" and any(bytes(v[-len(LYING) - 1:-1]) == LYING
                                         for v in inputs):
        manifest = json.loads(answer[0])
        manifest["report"] = {**manifest["report"], "pages": 99}
        return [json.dumps(manifest).encode(), answer[1]]
    return answer


warm_up = child.warm_up
assert struct.calcsize("<IIdd") == 24
