"""Red team, wave 4: this session's fast paths attacked with real parts.

- operations/_common.pdf_source reads a big input in place when a hint from untrusted
  bytes (/Size of the last xref section) says its objects are big: hostile hints, damaged
  files and the 1 MiB threshold must give qpdf what a copy gives it, and a document that
  lies about /Size still comes through the real server as a copy of it would.
- operations/document_id patches the trailer's /ID in place: decoys elsewhere are left as
  they are, nothing but the ID changes, and the input's own first ID is kept even when it
  is qpdf's static constant.
- the fork server's huge pages and malloc's huge-page tunable: no job sees another's
  memory, and a job near its memory limit still succeeds.
- fuzz.properties.Checked: a repeat is skipped only when it is the very same call.
"""
from __future__ import annotations

import functools
import io
import re

import pikepdf
import pypdf
import pytest

from fuzz.properties import Call, Checked
from notrace.operations._common import (IN_PLACE_FROM_BYTES, InPlaceReader, declared_objects,
                                        pdf_source, save_pdf)
from notrace.operations.document_id import STATIC_ID
from sandbox import Limits, Sandbox
from tests.pdfs import make_pdf
from tests.service.server import Server
from tests.service.test_large_bodies import image_document, opened

pytestmark = pytest.mark.timeout(120)

_STATIC_BYTES = bytes.fromhex(STATIC_ID.decode())


# -- 1. the in-place reader and its hint ------------------------------------------------------

def _padded_to(data: bytes, size: int) -> bytes:
    """`data` grown to exactly `size` bytes by a comment after its header line."""
    header_end = data.index(b"\n") + 1
    pad = size - len(data)
    assert pad >= 2
    return data[:header_end] + b"%" + b"x" * (pad - 2) + b"\n" + data[header_end:]


@functools.cache
def _hostile_hints() -> dict[str, bytes]:
    image = image_document(3)                      # ~2.9 MB in a dozen objects: in place
    body = image[:image.rindex(b"startxref")]
    small = image_document(1, side=700)            # under the threshold
    return {
        "/Size 0": re.sub(rb"/Size \d+", b"/Size 0", image),
        "/Size -5": re.sub(rb"/Size \d+", b"/Size -5", image),
        "/Size of 21 digits": re.sub(rb"/Size \d+", b"/Size 999999999999999999999", image),
        "/Size 000000000000001": re.sub(rb"/Size \d+", b"/Size 000000000000001", image),
        "startxref past the end": body + b"startxref\n999999999999999\n%%EOF\n",
        "startxref over 64 bits": body + b"startxref\n99999999999999999999\n%%EOF\n",
        "startxref into the middle": body + b"startxref\n%d\n%%EOF\n" % (len(image) // 2),
        "startxref at the very end": body + b"startxref\n%d\n%%EOF\n" % (len(body) + 30),
        "300 startxrefs": body + b"startxref\n5\n%%EOF\n" * 300,
        "a /Size in a comment only": body + b"% /Size 1\nstartxref\n0\n%%EOF\n",
        "no xref, /Size 1 (rebuilt)": body.replace(b"xref\n", b"xref_\n")
        + b"trailer << /Size 1 /Root 1 0 R >>\nstartxref\n0\n%%EOF\n",
        "truncated mid-object": image[: len(image) - 700_000],
        "one byte below the threshold": _padded_to(small, IN_PLACE_FROM_BYTES - 1),
        "exactly the threshold": _padded_to(small, IN_PLACE_FROM_BYTES),
        "threshold, /Size 1": re.sub(rb"/Size \d+", b"/Size 1",
                                     _padded_to(small, IN_PLACE_FROM_BYTES)),
    }


#: Named at collection; built (2 s of JPEG noise) only when a test runs.
_HINT_NAMES = (
    "/Size 0",
    "/Size -5",
    "/Size of 21 digits",
    "/Size 000000000000001",
    "startxref past the end",
    "startxref over 64 bits",
    "startxref into the middle",
    "startxref at the very end",
    "300 startxrefs",
    "a /Size in a comment only",
    "no xref, /Size 1 (rebuilt)",
    "truncated mid-object",
    "one byte below the threshold",
    "exactly the threshold",
    "threshold, /Size 1",
)


@pytest.mark.parametrize("name", _HINT_NAMES)
def test_hostile_size_hints_give_qpdf_what_a_copy_gives(name):
    assert sorted(_hostile_hints()) == sorted(_HINT_NAMES)
    data = _hostile_hints()[name]
    view = memoryview(data)
    declared_objects(view)                          # never raises on hostile bytes
    source = pdf_source(view)
    assert isinstance(source, (InPlaceReader, io.BytesIO))
    assert opened(InPlaceReader(view)) == opened(io.BytesIO(data))


def test_the_threshold_is_where_it_says():
    small = image_document(1, side=700)
    below = _padded_to(small, IN_PLACE_FROM_BYTES - 1)
    at = _padded_to(small, IN_PLACE_FROM_BYTES)
    assert isinstance(pdf_source(memoryview(below)), io.BytesIO)
    assert isinstance(pdf_source(memoryview(at)), InPlaceReader)


def test_in_place_reader_edge_reads():
    data = bytes(range(256)) * 8
    reader, copy = InPlaceReader(memoryview(data)), io.BytesIO(data)
    for whence, offset, size in [(io.SEEK_END, 0, 0), (io.SEEK_END, 10, 5),
                                 (io.SEEK_SET, 1 << 62, 4096), (io.SEEK_SET, 0, 0),
                                 (io.SEEK_SET, 0, len(data) * 3), (io.SEEK_END, -1, 1)]:
        assert reader.seek(offset, whence) == copy.seek(offset, whence)
        buffer, expected = bytearray(size), bytearray(size)
        assert reader.readinto(memoryview(buffer)) == copy.readinto(memoryview(expected))
        assert buffer == expected and reader.tell() == copy.tell()
    with pytest.raises(ValueError):
        reader.seek(0, 7)


def _dense_liar() -> tuple[bytes, int]:
    """A text document of small objects (over the threshold, within the page limit) whose
    every /Size and xref table says 1: read in place, at Python's pace, though it should
    be copied (about 2x the CPU of a copy: its own job's cost, within its own limit)."""
    pages = 1900
    pdf = pikepdf.new()
    for number in range(pages):
        page = pdf.add_blank_page()
        page.obj.Contents = pdf.make_stream(b"BT /F1 12 Tf 72 720 Td (page %d) Tj ET\n" % number
                                            + b"% filler\n" * 60)
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    honest = out.getvalue()
    assert len(honest) >= IN_PLACE_FROM_BYTES
    assert len(honest) // declared_objects(memoryview(honest)) < 16 * 1024   # else in place
    liar = re.sub(rb"/Size \d+", b"/Size 1", honest)
    return re.sub(rb"xref\n0 \d+", b"xref\n0 1", liar), pages     # qpdf rebuilds its xref


def _linearized_dense() -> tuple[bytes, int]:
    """An honest, qpdf-linearized document whose first page holds 4,000 small objects: its
    first-page xref table (where startxref points) runs past the hint's 4 KB window, and
    the main trailer at its end declares /Size 4 (that section's own objects only)."""
    pdf = pikepdf.new()
    page = pdf.add_blank_page()
    forms = {f"/I{i}": pdf.make_stream(b"q Q " + b"%filler\n" * 40) for i in range(4000)}
    page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(forms))
    page.obj.Contents = pdf.make_stream(b" ".join(b"%s Do" % k.encode() for k in forms))
    pdf.add_blank_page()
    out = io.BytesIO()
    pdf.save(out, linearize=True, compress_streams=False)
    data = out.getvalue()
    with pikepdf.open(io.BytesIO(data)) as reopened:
        return data, int(reopened.trailer.Size)


def test_an_honest_dense_linearized_document_is_copied():
    """Read in place, it cost ~1.8x the CPU of a copy (info and save, measured here): the
    hint took the main trailer's /Size 4 for the whole file's 4,009."""
    data, objects = _linearized_dense()
    assert len(data) >= IN_PLACE_FROM_BYTES and len(data) // objects < 16 * 1024
    assert declared_objects(memoryview(data)) >= objects
    assert isinstance(pdf_source(memoryview(data)), io.BytesIO)
    assert opened(InPlaceReader(memoryview(data))) == opened(io.BytesIO(data))


@pytest.fixture(scope="module")
def server():
    started = Server({}).start()
    yield started
    started.stop()


def test_a_document_lying_about_its_size_comes_through_the_server(server):
    liar, pages = _dense_liar()
    assert isinstance(pdf_source(memoryview(liar)), InPlaceReader)
    info = server.post("info", [liar])
    assert info.status == 200, info.body[:300]
    assert info.json()["pages"] == pages
    selected = server.post("select", [liar], {"pages": "1-3"})
    assert selected.status == 200, selected.body[:300]
    with pikepdf.open(io.BytesIO(selected.body)) as pdf:
        assert len(pdf.pages) == 3


@pytest.mark.parametrize("name", ["startxref over 64 bits", "truncated mid-object",
                                  "/Size of 21 digits", "300 startxrefs"])
def test_hostile_hints_cost_a_4xx_or_succeed_never_a_5xx(server, name):
    reply = server.post("info", [_hostile_hints()[name]])
    assert reply.status < 500, reply.body[:300]
    assert reply.status == 200 or reply.problem_type is not None


def test_a_hostile_second_input_read_in_place_costs_a_4xx(server):
    honest = image_document(3)
    reply = server.post("merge", [honest, _hostile_hints()["startxref over 64 bits"]])
    assert 400 <= reply.status < 500 and reply.problem_type is not None, reply.body[:300]
    rebuilt = server.post("merge", [honest, _hostile_hints()["no xref, /Size 1 (rebuilt)"]])
    assert rebuilt.status < 500, rebuilt.body[:300]


# -- 2. the /ID patched in place --------------------------------------------------------------

def _trailer_id(data: bytes) -> list[bytes]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [bytes(part) for part in pdf.trailer.ID]


def test_a_document_whose_first_id_is_qpdfs_constant_keeps_it():
    """qpdf keeps the input's first /ID element whatever it is; the patch took an input
    first element equal to the static constant for "no ID" and replaced it."""
    pdf = pikepdf.open(io.BytesIO(make_pdf(2)))
    pdf.trailer.ID = pikepdf.Array([pikepdf.String(_STATIC_BYTES), pikepdf.String(b"x" * 16)])
    first, second = _trailer_id(save_pdf(pdf))
    assert first == _STATIC_BYTES
    assert second != _STATIC_BYTES


_DECOY = b"/ID [<aa><" + STATIC_ID + b">]"
_SAVES = {
    "plain": {},
    "uncompressed": {"compress_streams": False},
    "object streams": {"object_stream_mode": pikepdf.ObjectStreamMode.generate},
    "object streams, uncompressed": {"object_stream_mode": pikepdf.ObjectStreamMode.generate,
                                     "compress_streams": False},
}


def _decoyed(with_id: bool) -> pikepdf.Pdf:
    pdf = pikepdf.open(io.BytesIO(make_pdf(3)))
    if not with_id:
        del pdf.trailer.ID
    pdf.pages[0].Contents = pdf.make_stream(b"BT (" + _DECOY + b") Tj ET % " + _DECOY + b"\n")
    pdf.Root.Metadata = pdf.make_stream(_DECOY * 3)
    pdf.Root.Names = pikepdf.Dictionary(Dests=pikepdf.Dictionary(
        Names=pikepdf.Array([pikepdf.String(_DECOY), pikepdf.Array([])])))
    pdf.trailer.Zzz = pikepdf.String(_DECOY)
    return pdf


@pytest.mark.filterwarnings("ignore")      # pypdf and pikepdf on the decoy XMP
@pytest.mark.parametrize("with_id", [True, False])
@pytest.mark.parametrize("save", sorted(_SAVES))
def test_decoys_stay_and_only_the_trailers_id_changes(save, with_id):
    options = _SAVES[save]
    pdf = _decoyed(with_id)
    own_first = bytes(pdf.trailer.ID[0]) if with_id else None
    saved = save_pdf(pdf, **options)
    static = io.BytesIO()
    pdf.save(static, static_id=True, **options)
    static = static.getvalue()
    assert saved == save_pdf(_decoyed(with_id), **options)            # deterministic
    assert len(saved) == len(static)
    differ = [i for i in range(len(saved)) if saved[i] != static[i]]
    trailer_id = static.rindex(b"/ID [<")
    assert differ and trailer_id < differ[0] and differ[-1] < static.rindex(b"startxref")
    assert len(differ) <= 64                                          # two hex IDs at most
    first, second = _trailer_id(saved)
    assert second != _STATIC_BYTES
    assert first == (own_first if with_id else second)
    with pikepdf.open(io.BytesIO(saved)) as reopened:
        assert bytes(reopened.trailer.Zzz) == _DECOY
        assert _DECOY in reopened.pages[0].Contents.read_bytes()
    assert len(pypdf.PdfReader(io.BytesIO(saved)).pages) == 3
    other = _decoyed(with_id)
    other.pages[1].Rotate = 90
    assert _trailer_id(save_pdf(other, **options))[1] != second        # distinct


@pytest.mark.filterwarnings("ignore")
def test_the_ids_through_the_server_are_derived_stable_and_keep_the_inputs_first(server):
    document = _decoyed(with_id=True)
    document.trailer.ID = pikepdf.Array([pikepdf.String(_STATIC_BYTES), pikepdf.String(b"x")])
    decoyed = io.BytesIO()
    document.save(decoyed, static_id=True)                 # its own first ID: the constant
    sent = decoyed.getvalue()
    assert _trailer_id(sent)[0] == _STATIC_BYTES
    answers = [server.post("flatten", [sent]) for _ in range(2)]
    assert all(reply.status == 200 for reply in answers), answers[0].body[:300]
    assert answers[0].body == answers[1].body                        # no clock, no chance
    first, second = _trailer_id(answers[0].body)
    assert first == _STATIC_BYTES and second != _STATIC_BYTES
    assert _DECOY in answers[0].body or b"Filter" in answers[0].body  # decoys travel as data
    assert len(pypdf.PdfReader(io.BytesIO(answers[0].body)).pages) == 3


# -- 3. memory: huge pages, the tunable, the limit --------------------------------------------

ENTRY = "tests.attack.wave4_entries:dispatch"
LIMITS = Limits(memory_mb=256, cpu_s=5, wall_s=20, output_mb=8)


def test_no_job_sees_another_jobs_memory_and_one_near_its_limit_succeeds():
    outcomes = []
    with Sandbox(ENTRY, limits=LIMITS, workers=2, queue=4) as sb:
        for inputs, params in [([], {"do": "scribble"}), ([], {"do": "look"}),
                               ([], {"do": "scribble"}), ([], {"do": "look"}),
                               ([], {"do": "malloc_and_touch", "mb": 230}),   # 90% of 256
                               ([], {"do": "allocate", "mb": 230}),
                               ([b"\x01" * (100 << 20)], {"do": "allocate", "mb": 120}),
                               ([], {"do": "allocate", "mb": 300})]:          # over it
            result = sb.run_sync(inputs, params)
            outcomes.append((params["do"], result.status, [bytes(o) for o in result.outputs]))
            result.close()
    looks = [outputs for do, _, outputs in outcomes if do == "look"]
    assert looks == [[b"clean"], [b"clean"]], outcomes
    *within, over = outcomes
    assert all(status == "ok" for _, status, _ in within), outcomes
    assert over[1] != "ok", outcomes                    # the limit is real


# -- 4. fuzz's Checked ------------------------------------------------------------------------

def test_checked_keys_tell_every_difference_of_a_call_apart():
    base = Call("select", (b"%PDF-1.7 a", b"b"), (("pages", "1"),))
    variants = [
        Call("rotate", base.inputs, base.params),
        Call("select", (b"b", b"%PDF-1.7 a"), base.params),          # input order
        Call("select", (b"%PDF-1.7 a" + b"b",), base.params),         # joined inputs
        Call("select", base.inputs, (("pages", "1 "),)),
        Call("select", base.inputs, (("pages", "1"), ("pages", "1"))),
        Call("select", base.inputs, ()),
    ]
    keys = {Checked.key(call) for call in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    assert Checked.key(("law", (b"x", 1))) != Checked.key(("law", (b"x", True)))
    assert Checked.key(("law", (b"x", 1))) != Checked.key(("law", (b"x", "1")))
    assert Checked.key(base) == Checked.key(Call(*dataclass_values(base)))
    checked = Checked()
    checked.add(Checked.key(base))
    assert Checked.key(base) in checked and Checked.key(variants[0]) not in checked


def dataclass_values(call: Call) -> tuple:
    return call.operation, tuple(bytes(i) for i in call.inputs), tuple(call.params)
