"""The attack classes of docs/threats.md, one strategy each, inside otherwise valid files.

Runs in the test process or a fuzz driver. Each attack is a small input (at most max_size
bytes) that makes a reader inflate, loop, recurse or scan: the file around it is a
well-formed one-page document so that parsers reach the payload. Bombs are built without
ever holding their inflated form: deflate blocks of a repeated chunk are identical after a
full flush, and the Adler-32 of a repetition is computed by combination.
"""
from __future__ import annotations

import functools
import re
import zlib
from typing import Any, Callable

from hypothesis import strategies as st

from fuzz._crypt import StandardSecurity
from fuzz._filters import CLEAR, EOD, FilterChain, pack_lzw_codes
from fuzz._syntax import HexString, Name, Raw, Ref, Revision, Stream, Written, serialize, write_pdf, xref_stream

_MIB = 1 << 20
_ADLER_BASE = 65521
PAGE_TEXT = b"BT /F1 12 Tf 72 720 Td (page 1) Tj ET"


# -- bombs without the bang -------------------------------------------------------------

def _adler_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A+B from those of A and B (zlib's adler32_combine)."""
    rem = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (first >> 16) + (second >> 16) + _ADLER_BASE - rem) % _ADLER_BASE
    return (sum2 << 16) | sum1


def _adler_repeated(chunk: bytes, count: int) -> int:
    result, power, power_length = 1, zlib.adler32(chunk), len(chunk)
    while count:  # square-and-multiply over concatenation
        if count & 1:
            result = _adler_combine(result, power, power_length)
        power, power_length = _adler_combine(power, power, power_length), power_length * 2
        count >>= 1
    return result


@functools.lru_cache(maxsize=64)
def deflate_repeated(chunk: bytes, count: int, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """A zlib stream of prefix + chunk * count + suffix, in time independent of count."""
    compressor = zlib.compressobj(9)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(suffix) + compressor.flush(zlib.Z_FULL_FLUSH)
    # The final empty fixed-Huffman block (BFINAL=1, BTYPE=01, end-of-block) is 0x03 0x00.
    checksum = _adler_combine(_adler_combine(zlib.adler32(prefix), _adler_repeated(chunk, count), len(chunk) * count),
                              zlib.adler32(suffix), len(suffix))
    return head + block * count + tail + b"\x03\x00" + checksum.to_bytes(4, "big")


@functools.lru_cache(maxsize=32)
def nested_flate_zeros(levels: int, inflated: int) -> bytes:
    """`levels` nested zlib layers over `inflated` zero bytes (rounded to whole MiB)."""
    data = deflate_repeated(bytes(_MIB), max(1, inflated // _MIB))
    for _ in range(levels - 1):
        data = zlib.compress(data, 9)
    return data


@functools.lru_cache(maxsize=64)
def lzw_bomb_data(cycles: int) -> bytes:
    """Clear, 0, 258..4093 repeated: every code is the previous string plus one byte, so
    each cycle of ~5.5 KB decodes to ~7.4 MB (ratio ~1300:1)."""
    cycle = [CLEAR, 0, *range(258, 4094)]
    return pack_lzw_codes(cycle * cycles + [EOD])


# -- the carrier document -----------------------------------------------------------------

def carrier(*, contents: Any = None, page: dict | None = None, catalog: dict | None = None,
            objects: dict | None = None, trailer: dict | None = None, xref: str = "table",
            packed: frozenset = frozenset(), crypt_for=None) -> Written:
    """A one-page document (1 catalog, 2 pages, 3 page, 4 contents, 5 font, extras from 6)
    with parts replaced or added."""
    objs: dict[int, Any] = {
        1: {"Type": Name("Catalog"), "Pages": Ref(2), **(catalog or {})},
        2: {"Type": Name("Pages"), "Kids": [Ref(3)], "Count": 1},
        3: {"Type": Name("Page"), "Parent": Ref(2), "MediaBox": [0, 0, 612, 792], "Contents": Ref(4),
            "Resources": {"Font": {"F1": Ref(5)}}, **(page or {})},
        4: contents if contents is not None else Stream({}, PAGE_TEXT),
        5: {"Type": Name("Font"), "Subtype": Name("Type1"), "BaseFont": Name("Helvetica")},
        **(objects or {}),
    }
    return write_pdf([Revision(objs, {"Root": Ref(1), **(trailer or {})}, xref, packed)], crypt_for=crypt_for)


@st.composite
def _placed(draw, stream: Stream) -> bytes:
    """The stream where a reader will decode it: page contents, a form XObject the page
    draws, or an object nothing references (found only by the xref or a rebuild)."""
    where = draw(st.sampled_from(("contents", "xobject", "orphan")))
    if where == "contents":
        return carrier(contents=stream).data
    if where == "xobject":
        form = Stream({"Type": Name("XObject"), "Subtype": Name("Form"), "BBox": [0, 0, 10, 10],
                       **stream.dictionary}, stream.data)
        return carrier(contents=Stream({}, b"q /X0 Do Q " + PAGE_TEXT), objects={6: form},
                       page={"Resources": {"Font": {"F1": Ref(5)}, "XObject": {"X0": Ref(6)}}}).data
    return carrier(objects={6: stream}).data


def _fits(max_size: int, per_unit: int, overhead: int = 1024) -> int:
    return max(1, (max_size - overhead) // per_unit)


# -- one strategy per class ---------------------------------------------------------------

@st.composite
def flate_bomb(draw, max_size: int) -> bytes:
    levels = draw(st.integers(1, 3))
    # One layer: ~1 KB per MiB, so the size cap bounds it; nested layers reach GiBs.
    ceiling = _fits(max_size, 1040) if levels == 1 else 4096
    sizes = sorted({min(m, ceiling) for m in (16, 64, 256, 1024, 4096)})
    chosen = sizes[: sizes.index(draw(st.sampled_from(sizes))) + 1]
    # Nested, 4 GiB still takes ~10 KB: the largest drawn size that fits max_size.
    for mib in reversed(chosen):
        data = nested_flate_zeros(levels, mib * _MIB)
        if len(data) <= max_size - 1024 or mib == chosen[0]:
            break
    return draw(_placed(Stream({"Filter": [Name("FlateDecode")] * levels}, data)))


@st.composite
def lzw_bomb(draw, max_size: int) -> bytes:
    cycles = draw(st.integers(1, min(64, _fits(max_size, 5800))))
    parms = draw(st.sampled_from(({}, {"DecodeParms": {"EarlyChange": 1}})))
    return draw(_placed(Stream({"Filter": Name("LZWDecode"), **parms}, lzw_bomb_data(cycles))))


@st.composite
def runlength_bomb(draw, max_size: int) -> bytes:
    # 0x81 0x00 is "repeat the next byte 128 times": 64:1 alone, ~64000:1 under Flate.
    if draw(st.booleans()):
        pairs = draw(st.integers(1, _fits(max_size, 2)))
        return draw(_placed(Stream({"Filter": Name("RunLengthDecode")}, b"\x81\x00" * pairs + b"\x80")))
    mib = draw(st.sampled_from([m for m in (1, 16, 256, 1024) if m * 1100 < max_size] or [1]))
    return draw(_placed(Stream({"Filter": [Name("FlateDecode"), Name("RunLengthDecode")]},
                               deflate_repeated(b"\x81\x00" * (_MIB // 2), mib, suffix=b"\x80"))))


@st.composite
def filter_chain(draw, max_size: int) -> bytes:
    length = draw(st.integers(25, 120))
    names = draw(st.lists(st.sampled_from(("FlateDecode", "ASCIIHexDecode", "ASCII85Decode", "RunLengthDecode",
                                           "LZWDecode")), min_size=length, max_size=length))
    data = PAGE_TEXT
    # Encode right to left; a stage whose output would grow past the budget becomes Flate
    # (hex and base-85 stages expand, so 120 of them would not fit otherwise).
    for index in reversed(range(length)):
        encoded, _ = FilterChain((names[index],)).encode(data)
        if len(encoded) > min(max_size // 2, 512):
            names[index] = "FlateDecode"
            encoded = zlib.compress(data, 9)
        data = encoded
    return draw(_placed(Stream({"Filter": [Name(n) for n in names]}, data)))


@st.composite
def predictor_buffer(draw, max_size: int) -> bytes:
    parms = {"Predictor": draw(st.sampled_from((2, 10, 12, 15))), "Colors": draw(st.sampled_from((1, 4, 32, 255))),
             "BitsPerComponent": draw(st.sampled_from((8, 16))),
             "Columns": draw(st.sampled_from((100_000_000, 2**30, 2**31 - 1, 2**32 + 1, 10**12)))}
    data = zlib.compress(bytes(draw(st.integers(1, 4096))))
    filters = draw(st.sampled_from(("FlateDecode", "LZWDecode")))
    if filters == "LZWDecode":
        data = FilterChain(("LZWDecode",)).encode(bytes(256))[0]
    return draw(_placed(Stream({"Filter": Name(filters), "DecodeParms": parms}, data)))


@st.composite
def image_bomb(draw, max_size: int) -> bytes:
    width, height = draw(st.integers(20_000, 65_535)), draw(st.integers(20_000, 65_535))
    space, bits = draw(st.sampled_from((("DeviceRGB", 8), ("DeviceGray", 8), ("DeviceCMYK", 8), ("DeviceRGB", 16))))
    data = draw(st.binary(min_size=1, max_size=100))
    image = {"Type": Name("XObject"), "Subtype": Name("Image"), "Width": width, "Height": height,
             "ColorSpace": Name(space), "BitsPerComponent": bits}
    if draw(st.booleans()):
        image["Filter"] = Name("FlateDecode")
        data = zlib.compress(data)
    return carrier(contents=Stream({}, b"q 612 0 0 792 0 0 cm /Im0 Do Q " + PAGE_TEXT),
                   objects={6: Stream(image, data)},
                   page={"Resources": {"Font": {"F1": Ref(5)}, "XObject": {"Im0": Ref(6)}}}).data


@st.composite
def huge_length(draw, max_size: int) -> bytes:
    kind = draw(st.sampled_from(("huge", "self", "mutual", "negative", "object")))
    length: Any = {"huge": draw(st.sampled_from((2**31 - 1, 2**32, 2**63 - 1, 10**15))), "self": Ref(4),
                   "mutual": Ref(6), "negative": -1, "object": Ref(7)}[kind]
    # "mutual": /Length 6 0 R where 6 is `4 0 R`; "object": /Length is a dictionary.
    extras = {6: Ref(4), 7: {"Length": Ref(4)}}
    return carrier(contents=Stream({"Length": length}, PAGE_TEXT), objects=extras).data


@st.composite
def deep_nesting(draw, max_size: int) -> bytes:
    opener, closer = draw(st.sampled_from(((b"[", b"]"), (b"<</A ", b">>"))))
    depth = draw(st.integers(500, _fits(max_size, len(opener) + len(closer))))
    nest = opener * depth + (closer * depth if draw(st.booleans()) else b"")
    if draw(st.booleans()):  # in a content stream: [[[...]]] as an operand
        return carrier(contents=Stream({}, nest + b" pop " + PAGE_TEXT)).data
    return carrier(catalog={"Nest": Ref(6)}, objects={6: Raw(nest)}).data


@st.composite
def objstm_recursion(draw, max_size: int) -> bytes:
    """Object stream 6 holds the catalog; then 6 is said to live inside itself, or extends
    itself, or its objects point back at it."""
    kind = draw(st.sampled_from(("self_contained", "extends_self", "mutual", "back_reference")))
    catalog = serialize({"Type": Name("Catalog"), "Pages": Ref(2), "Stm": Ref(6)})
    head = b"1 0\n"
    stm6 = {"Type": Name("ObjStm"), "N": 1, "First": len(head)}
    if kind in ("extends_self", "mutual"):
        stm6["Extends"] = Ref(6 if kind == "extends_self" else 7)
    objs = {
        2: {"Type": Name("Pages"), "Kids": [Ref(3)], "Count": 1},
        3: {"Type": Name("Page"), "Parent": Ref(2), "MediaBox": [0, 0, 612, 792], "Contents": Ref(4),
            "Resources": {"Font": {"F1": Ref(5)}}},
        4: Stream({}, PAGE_TEXT), 5: {"Type": Name("Font"), "Subtype": Name("Type1"), "BaseFont": Name("Helvetica")},
        6: Stream(stm6, head + catalog + b"\n"),
        7: Stream({"Type": Name("ObjStm"), "N": 1, "First": 4, "Extends": Ref(6)}, b"8 0 " + serialize(Ref(7)) + b"\n"),
    }
    out = bytearray(b"%PDF-1.7\n")
    entries: dict[int, tuple[int, int, int]] = {0: (0, 0, 65535), 1: (2, 6, 0), 8: (2, 7, 0)}
    for num, obj in objs.items():
        entries[num] = (1, len(out), 0)
        out += b"%d 0 obj\n" % num + serialize(obj) + b"\nendobj\n"
    if kind == "self_contained":
        entries[6] = (2, 6, 0)  # object 6 is "in" object stream 6
    if kind == "mutual":
        entries[6], entries[7] = (2, 7, 0), (2, 6, 0)
    start = len(out)
    entries[9] = (1, start, 0)
    out += b"9 0 obj\n" + serialize(xref_stream(entries, {"Root": Ref(1), "Size": 10})) + b"\nendobj\n"
    return bytes(out + b"startxref\n%d\n%%%%EOF\n" % start)


_PREV_PLACEHOLDER = b"9999999999"


@st.composite
def prev_loop(draw, max_size: int) -> bytes:
    """/Prev pointing at the xref it belongs to, or two xrefs pointing at each other."""
    kinds = [draw(st.sampled_from(("table", "stream"))) for _ in range(draw(st.integers(1, 2)))]
    # A fixed-width placeholder, patched after layout, so that no offset moves.
    objs = {1: {"Type": Name("Catalog"), "Pages": Ref(2)},
            2: {"Type": Name("Pages"), "Kids": [Ref(3)], "Count": 1},
            3: {"Type": Name("Page"), "Parent": Ref(2), "MediaBox": [0, 0, 612, 792]}}
    revisions = [Revision(objs, {"Root": Ref(1), "Prev": Raw(_PREV_PLACEHOLDER)}, kinds[0], compress_xref=False)]
    if len(kinds) == 2:
        revisions.append(Revision({1: objs[1]}, {"Root": Ref(1)}, kinds[1], compress_xref=False))
    written = write_pdf(revisions)
    target = written.xref_offsets[-1]
    return written.data.replace(_PREV_PLACEHOLDER, b"%010d" % target)


@st.composite
def rebuild_storm(draw, max_size: int) -> bytes:
    """Thousands of tiny objects full of `0 0 R` and a startxref that points nowhere, so
    the reader must reconstruct the xref by scanning."""
    unit = draw(st.sampled_from((b"0 0 R", b"<</A 0 0 R /B [0 0 R 0 0 R]>>", b"[0 0 R]")))
    count = draw(st.integers(100, _fits(max_size, len(unit) + 24)))
    head = carrier().data
    head = head[: head.rindex(b"\nxref") + 1] if draw(st.booleans()) else head[: head.rindex(b"startxref")]
    body = b"".join(b"%d 0 obj %s endobj\n" % (6 + i, unit) for i in range(count))
    return head + body + b"startxref\n%d\n%%%%EOF\n" % draw(st.sampled_from((0, 999_999_999, 2**40)))


@st.composite
def page_tree_cycle(draw, max_size: int) -> bytes:
    """Kids A -> B -> ... -> A (length 1 is a node that is its own kid)."""
    length = draw(st.integers(1, 5))
    nodes = [2] + list(range(6, 6 + length - 1))
    objs = {num: {"Type": Name("Pages"), "Kids": [Ref(nodes[(i + 1) % length]), Ref(3)], "Count": 2}
            for i, num in enumerate(nodes)}
    return carrier(objects=objs).data  # object 2, the root /Pages, is replaced by the cycle's head


@functools.lru_cache(maxsize=16)
def deep_page_tree(depth: int) -> bytes:
    """A chain of `depth` nested /Pages nodes with one page at the bottom, packed into a
    compressed object stream so that thousands of levels fit in a few KB."""
    chain = list(range(6, 6 + depth))
    objs = {num: {"Type": Name("Pages"), "Kids": [Ref(chain[i + 1] if i + 1 < depth else 3)], "Count": 1,
                  "Parent": Ref(chain[i - 1] if i else 2)} for i, num in enumerate(chain)}
    objs[2] = {"Type": Name("Pages"), "Kids": [Ref(6)], "Count": 1}
    return carrier(objects=objs, page={"Parent": Ref(chain[-1])}, xref="stream", packed=frozenset(chain)).data


@st.composite
def page_tree_depth(draw, max_size: int) -> bytes:
    # A few fixed depths, each built once (cached): building 20000 levels takes ~0.3 s.
    # Packed, a level costs ~10 bytes; only depths that can fit are ever built.
    depths = [d for d in (101, 1000, 5000, 20_000) if d == 101 or d * 9 <= max_size]
    for depth in sorted(depths[: depths.index(draw(st.sampled_from(depths))) + 1], reverse=True):
        if len(deep_page_tree(depth)) <= max_size or depth == 101:
            return deep_page_tree(depth)


@st.composite
def missing_root(draw, max_size: int) -> bytes:
    written = carrier(xref=draw(st.sampled_from(("table", "stream"))))
    size = draw(st.sampled_from((2_000_000_000, 2**31 - 1, 2**32, 10**10)))
    data = written.data.replace(b"/Root 1 0 R", b"")
    position = data.rindex(b"/Size")
    return data[:position] + re.sub(rb"^/Size \d+", b"/Size %d" % size, data[position:])


@st.composite
def outline_cycle(draw, max_size: int) -> bytes:
    kind = draw(st.sampled_from(("next_self", "next_pair", "first_self", "parent_loop", "last_prev")))
    item = {"Title": b"a", "Parent": Ref(6), "Dest": [Ref(3), Name("Fit")]}
    items = {7: dict(item), 8: dict(item)}
    if kind == "next_self":
        items[7]["Next"] = Ref(7)
    elif kind == "next_pair":
        items[7]["Next"], items[8]["Next"], items[8]["Prev"] = Ref(8), Ref(7), Ref(7)
    elif kind == "first_self":
        items[7].update(First=Ref(7), Last=Ref(7), Count=1)
    elif kind == "parent_loop":
        items[7].update(First=Ref(8), Last=Ref(8), Count=1)
        items[8].update(Parent=Ref(7), First=Ref(7), Last=Ref(7), Count=1)
    else:
        items[7]["Prev"], items[7]["Next"] = Ref(8), Ref(8)
        items[8]["Next"], items[8]["Prev"] = Ref(7), Ref(7)
    root = {"Type": Name("Outlines"), "First": Ref(7), "Last": Ref(7), "Count": 2}
    return carrier(catalog={"Outlines": Ref(6)}, objects={6: root, **items}).data


def xmp_laughs_data(levels: int, fanout: int) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">'] + [
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(fanout))) for i in range(1, levels)
    ]
    return (b'<?xml version="1.0"?>\n<!DOCTYPE x:xmpmeta [\n' + b"\n".join(entities) + b"\n]>\n"
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol%d;</dc:title>'
            b"</rdf:Description></rdf:RDF></x:xmpmeta>" % (levels - 1))


@st.composite
def xmp_laughs(draw, max_size: int) -> bytes:
    levels, fanout = draw(st.integers(8, 12)), draw(st.integers(8, 12))  # >= 8**7 expansions
    data = xmp_laughs_data(levels, fanout)
    meta: dict = {"Type": Name("Metadata"), "Subtype": Name("XML")}
    if draw(st.booleans()):
        meta["Filter"], data = Name("FlateDecode"), zlib.compress(data)
    return carrier(catalog={"Metadata": Ref(6)}, objects={6: Stream(meta, data)}).data


@st.composite
def slow_filter(draw, max_size: int) -> bytes:
    """Megabytes of ASCIIHex `20` pairs (spaces) delivered through Flate."""
    mib = draw(st.sampled_from([m for m in (1, 8, 24, 48) if m * 1100 < max_size] or [1]))
    data = deflate_repeated(b"20" * (_MIB // 2), mib, prefix=b"", suffix=b">")
    return draw(_placed(Stream({"Filter": [Name("FlateDecode"), Name("ASCIIHexDecode")]}, data)))


@st.composite
def huge_array(draw, max_size: int) -> bytes:
    """/Contents with thousands of entries (all the same small stream), or a huge array
    of numbers as an operand."""
    count = draw(st.integers(1000, _fits(max_size, 7)))
    if draw(st.booleans()):
        return carrier(page={"Contents": [Ref(4)] * count}).data
    return carrier(contents=Stream({}, b"[" + b"0 " * count + b"] 0 d " + PAGE_TEXT)).data


@st.composite
def inline_image_no_ei(draw, max_size: int) -> bytes:
    data = draw(st.binary(min_size=0, max_size=512))
    # Near misses of the end marker, never preceded and followed by whitespace.
    data += draw(st.sampled_from((b"", b"xEIx", b"EI", b"\nEIx", b"EEI")))
    filler = bytes(draw(st.integers(0, _fits(max_size, 1))) // 2) if draw(st.booleans()) else b""
    content = PAGE_TEXT + b"\nq 10 0 0 10 0 0 cm BI /W 100 /H 100 /BPC 8 /CS /G ID " + data + filler
    return carrier(contents=Stream({}, content)).data


@st.composite
def eof_comment(draw, max_size: int) -> bytes:
    """A `%` comment running to the end of the file (no %%EOF, no final newline)."""
    base = carrier().data
    if draw(st.booleans()):
        base = base[: base.rindex(b"startxref")]
    tail = draw(st.sampled_from((b"", b" ", b"A", b"%")))
    return base + b"%" + tail * draw(st.integers(0, max(0, _fits(max_size, 1) - len(base))))


@st.composite
def aes_ascii85(draw, max_size: int) -> bytes:
    """AESV2-encrypted document whose content stream is ASCII85 over ciphertext that
    decrypts to garbage (qpdf CVE-2021-25786's path)."""
    security = StandardSecurity(revision=4, owner_password=draw(st.binary(max_size=8)),
                                document_id=draw(st.binary(min_size=16, max_size=16)))
    blocks = draw(st.integers(1, 64))
    ciphertext = draw(st.binary(min_size=16 * (blocks + 1), max_size=16 * (blocks + 1)))
    return carrier(contents=Stream({"Filter": Name("ASCII85Decode")}, ciphertext),
                   objects={6: security.dictionary()},
                   trailer={"Encrypt": Ref(6), "ID": [HexString(security.document_id)] * 2}).data


ATTACKS: dict[str, Callable[..., st.SearchStrategy[bytes]]] = {
    "flate_bomb": flate_bomb, "lzw_bomb": lzw_bomb, "runlength_bomb": runlength_bomb,
    "filter_chain": filter_chain, "predictor_buffer": predictor_buffer, "image_bomb": image_bomb,
    "huge_length": huge_length, "deep_nesting": deep_nesting, "objstm_recursion": objstm_recursion,
    "prev_loop": prev_loop, "rebuild_storm": rebuild_storm, "page_tree_cycle": page_tree_cycle,
    "page_tree_depth": page_tree_depth, "missing_root": missing_root, "outline_cycle": outline_cycle,
    "xmp_laughs": xmp_laughs, "slow_filter": slow_filter, "huge_array": huge_array,
    "inline_image_no_ei": inline_image_no_ei, "eof_comment": eof_comment, "aes_ascii85": aes_ascii85,
}
