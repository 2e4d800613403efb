"""The fuzz strategies themselves: public surface, validity of pdfs(), argument checks, and
that every attack strategy really carries its attack.

Runs in the test process. Bombs are only ever decoded here with bounded decoders (our own,
zlib with max_length, pypdf's LZW with a small limit): never opened with pikepdf unbounded.
"""
from __future__ import annotations

import base64
import inspect
import io
import logging
import re
import zlib

import pikepdf
import pypdf
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fuzz.strategies as strategies
from fuzz._attacks import PAGE_TEXT, deflate_repeated
from fuzz._syntax import serialize
from fuzz._filters import lzw_decode, lzw_encode, runlength_decode, runlength_encode
from fuzz.strategies import (ATTACK_KINDS, attack_pdfs, corpus_pdfs, filter_chains, malformed_pdfs, mutated_pdfs,
                             pdf_objects, pdfs)

pytestmark = pytest.mark.timeout(60)

# Generation is the slow part (building documents, not checking them), so the deadline is
# off; too_slow and data_too_large are about strategies that build whole files per example.
FAST = settings(max_examples=10, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every quirk it repairs


# -- public surface ------------------------------------------------------------------------

def test_all_lists_exactly_the_public_names():
    public = {name for name, value in vars(strategies).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == strategies.__name__}
    assert set(strategies.__all__) == public | {"ATTACK_KINDS"}
    assert strategies.__all__ == sorted(strategies.__all__)
    for name in strategies.__all__:
        assert hasattr(strategies, name)


@pytest.mark.parametrize("name", [n for n in strategies.__all__ if n != "ATTACK_KINDS"])
def test_public_strategies_are_plural_keyword_only_and_draw(name):
    factory = getattr(strategies, name)
    assert name.endswith("s")
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in inspect.signature(factory).parameters.values())
    strategy = factory()
    assert isinstance(strategy, st.SearchStrategy)

    @FAST
    @given(strategy)
    def draws(example):
        assert example is not None

    draws()


# -- valid documents -------------------------------------------------------------------------

def page_labels_with_pikepdf(data: bytes) -> list[bytes]:
    labels = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            contents = page.obj.Contents
            parts = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
            # RunLength is a "specialized" filter: pikepdf only decodes it when asked.
            raw = b"".join(p.read_bytes(decode_level=pikepdf.StreamDecodeLevel.specialized) for p in parts)
            shown = [bytes(op.operands[0]) for op in pikepdf.parse_content_stream(pikepdf.Stream(pdf, raw))
                     if str(op.operator) == "Tj"]
            labels.append(b" ".join(shown))
    return labels


def page_labels_with_pypdf(data: bytes) -> list[bytes]:
    return [page.extract_text().strip().encode() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


@settings(FAST, max_examples=25)
@given(st.data())
def test_pdfs_open_with_both_libraries_with_pages_in_order(data):
    low = data.draw(st.integers(1, 6), label="min_pages")
    high = data.draw(st.integers(low, 8), label="max_pages")
    pdf = data.draw(pdfs(min_pages=low, max_pages=high, encryption="any"))
    labels = page_labels_with_pikepdf(pdf)
    assert low <= len(labels) <= high
    expected = [b"page %d" % n for n in range(1, len(labels) + 1)]
    assert labels == expected
    assert page_labels_with_pypdf(pdf) == expected


@pytest.mark.parametrize("xref", ["table", "stream"])
def test_pdfs_honour_the_xref_kind(xref):
    @settings(FAST, max_examples=8)
    @given(pdfs(max_pages=3, xref=xref, max_updates=1))
    def check(pdf):
        has_stream, has_table = b"/Type /XRef" in pdf, re.search(rb"(?m)^xref\r?$", pdf) is not None
        assert (has_stream, has_table) == ((True, False) if xref == "stream" else (False, True))
        assert len(page_labels_with_pypdf(pdf)) >= 1

    check()


@settings(FAST, max_examples=8)
@given(pdfs(max_pages=2, encryption="rc4"))
def test_encrypted_pdfs_open_without_a_password(pdf):
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        assert opened.is_encrypted
    assert pypdf.PdfReader(io.BytesIO(pdf)).is_encrypted
    assert page_labels_with_pypdf(pdf)[0] == b"page 1"


@settings(FAST, max_examples=30)
@given(pdf_objects(references=False))
def test_pdf_objects_parse_with_qpdf(token):
    pikepdf.Object.parse(token)


@settings(FAST, max_examples=30)
@given(filter_chains(max_length=4), st.binary(max_size=300))
def test_readable_filter_chains_round_trip_through_both_libraries(chain, raw):
    encoded, entries = chain.encode(raw)
    pdf = pikepdf.new()
    stream = pikepdf.Stream(pdf, encoded)
    for key, value in entries.items():
        stream[f"/{key}"] = pikepdf.Object.parse(serialize(value))
    assert stream.read_bytes(decode_level=pikepdf.StreamDecodeLevel.specialized) == raw
    buffer = io.BytesIO()
    pdf.Root.Extra = pdf.make_indirect(stream)
    pdf.save(buffer, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none)
    reread = pypdf.PdfReader(io.BytesIO(buffer.getvalue())).trailer["/Root"]["/Extra"].get_object()
    assert reread.get_data() == raw


def test_own_lzw_and_runlength_codecs_round_trip_and_match_pypdf():
    from pypdf._codecs._codecs import LzwCodec
    sample = bytes(range(256)) * 40 + b"abcabcabcabc" * 500  # long enough to clear the table
    assert lzw_decode(lzw_encode(sample)) == sample
    assert LzwCodec().decode(lzw_encode(sample)) == sample
    assert runlength_decode(runlength_encode(sample)) == sample


# -- argument validation ---------------------------------------------------------------------

@pytest.mark.parametrize("call, bad", [
    (lambda: pdfs(min_pages=0), "0"),
    (lambda: pdfs(min_pages=3, max_pages=2), "2"),
    (lambda: pdfs(xref="tabel"), "'tabel'"),
    (lambda: pdfs(encryption="aes"), "'aes'"),
    (lambda: pdfs(max_pages=True), "True"),
    (lambda: pdf_objects(max_leaves=0), "0"),
    (lambda: filter_chains(max_length=-1), "-1"),
    (lambda: mutated_pdfs(max_mutations=0), "0"),
    (lambda: mutated_pdfs(seeds=b"%PDF"), "b'%PDF'"),
    (lambda: attack_pdfs(kinds=["lzw_bomb", "zip_bomb"]), "'zip_bomb'"),
    (lambda: attack_pdfs(kinds="lzw_bomb"), "'lzw_bomb'"),
    (lambda: attack_pdfs(max_size=100), "100"),
    (lambda: malformed_pdfs(max_size="big"), "'big'"),
    (lambda: corpus_pdfs(max_size=-5), "-5"),
])
def test_bad_arguments_are_rejected_naming_the_value(call, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        call()


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError):
        pdfs(1, 3)  # type: ignore[misc]


def test_missing_corpus_is_an_error_naming_the_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTRACE_CORPUS", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        corpus_pdfs()


# -- mutations -------------------------------------------------------------------------------

def test_mutations_change_a_seed_and_respect_max_size():
    seed = b"".join([b"%PDF-1.7\n1 0 obj <</Type /Catalog /Pages 2 0 R /Length 5>> endobj\n",
                     b"2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> endobj\n",
                     b"xref\n0 1\n0000000000 65535 f \ntrailer <</Root 1 0 R /Size 3>>\nstartxref\n60\n%%EOF\n"])
    changed = []

    @settings(FAST, max_examples=40)
    @given(mutated_pdfs(seeds=st.just(seed), max_size=200))
    def check(mutant):
        assert len(mutant) <= 200
        changed.append(mutant != seed)

    check()
    assert sum(changed) > len(changed) // 2


# -- attacks: each one really is its attack --------------------------------------------------

def objects_of(data: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\n(.*?)\nendobj", data, re.S)}


def stream_data(body: bytes) -> bytes:
    return body.split(b"\nstream\n", 1)[1].rsplit(b"\nendstream", 1)[0]


def attack_streams(data: bytes) -> list[tuple[bytes, bytes]]:
    """(dictionary, data) of streams 4 and 6: where the carrier puts a payload."""
    objs = objects_of(data)
    return [(objs[n].split(b"\nstream\n")[0], stream_data(objs[n])) for n in (4, 6)
            if n in objs and b"\nstream\n" in objs[n]]


def inflate(data: bytes, limit: int) -> bytes:
    return zlib.decompressobj().decompress(data, limit)


def filters_of(dictionary: bytes) -> list[bytes]:
    match = re.search(rb"/Filter\s*(\[[^\]]*\]|/\w+)", dictionary)
    return re.findall(rb"/(\w+)", match.group(1)) if match else []


def payload(data: bytes, filter_name: bytes) -> tuple[list[bytes], bytes]:
    for dictionary, raw in attack_streams(data):
        if filter_name in filters_of(dictionary):
            return filters_of(dictionary), raw
    raise AssertionError(f"no {filter_name!r} stream")


def check_flate_bomb(data):
    filters, raw = payload(data, b"FlateDecode")
    for _ in filters[:-1]:
        raw = inflate(raw, 64 << 20)
    assert len(inflate(raw, 100 * len(data) + 1)) > 100 * len(data)


def check_lzw_bomb(data):
    from pypdf._codecs._codecs import LzwCodec
    from pypdf.errors import LimitReachedError
    _, raw = payload(data, b"LZWDecode")
    assert len(lzw_decode(raw, max_output=100 * len(data) + 1)) > 100 * len(data)
    with pytest.raises(LimitReachedError):  # pypdf agrees, and stops at its limit
        LzwCodec(max_output_length=100 * len(data)).decode(raw)


def check_runlength_bomb(data):
    filters, raw = payload(data, b"RunLengthDecode")
    if filters[0] == b"FlateDecode":
        raw = inflate(raw, 1 << 20)
    assert len(runlength_decode(raw, max_output=1 << 24)) >= 60 * (min(len(raw), (1 << 24) // 64) - 1)


def check_filter_chain(data):
    decoders = {b"FlateDecode": zlib.decompress, b"LZWDecode": lzw_decode, b"RunLengthDecode": runlength_decode,
                b"ASCIIHexDecode": lambda d: bytes.fromhex(d.rstrip(b">").decode()),
                b"ASCII85Decode": lambda d: base64.a85decode(d.removesuffix(b"~>"))}
    (dictionary, raw), = [s for s in attack_streams(data) if len(filters_of(s[0])) >= 25]
    for name in filters_of(dictionary):
        raw = decoders[name](raw)
    assert raw == PAGE_TEXT


def check_predictor_buffer(data):
    parms = dict(re.findall(rb"/(Columns|Colors|BitsPerComponent) (\d+)", data))
    assert int(parms[b"Columns"]) * int(parms[b"Colors"]) * int(parms[b"BitsPerComponent"]) // 8 >= 10**8


def check_image_bomb(data):
    body = objects_of(data)[6]
    width, height = (int(re.search(rb"/%s (\d+)" % key, body).group(1)) for key in (b"Width", b"Height"))
    assert width * height >= 4 * 10**8 and len(stream_data(body)) <= 200


def check_huge_length(data):
    length = re.search(rb"4 0 obj\n<</Length ([^/>]+)", data).group(1).strip()
    assert length in (b"4 0 R", b"6 0 R", b"7 0 R", b"-1") or int(length) >= 2**31 - 1


def check_deep_nesting(data):
    assert max(len(m.group()) for m in re.finditer(rb"\[+|(?:<</A )+", data)) >= 500


def xref_stream_entries(data: bytes) -> dict[int, tuple[int, int, int]]:
    start = int(re.findall(rb"startxref\n(\d+)", data)[-1])
    body = data[start:]
    head, raw = body.split(b"\nstream\n", 1)
    raw = raw.split(b"\nendstream", 1)[0]
    widths = [int(w) for w in re.search(rb"/W \[(\d+) (\d+) (\d+)\]", head).groups()]
    index = [int(i) for i in re.search(rb"/Index \[([\d ]+)\]", head).group(1).split()]
    rows, width = zlib.decompress(raw), sum(widths) + 1
    previous, table = bytes(width - 1), []
    for i in range(0, len(rows), width):  # undo PNG Up
        previous = bytes((a + b) & 0xFF for a, b in zip(rows[i + 1 : i + width], previous))
        table.append(previous)
    nums = [n for first, count in zip(index[::2], index[1::2]) for n in range(first, first + count)]
    fields = lambda row: (row[0], int.from_bytes(row[1 : 1 + widths[1]], "big"), int.from_bytes(row[1 + widths[1]:], "big"))
    return {num: fields(row) for num, row in zip(nums, table)}


def check_objstm_recursion(data):
    entries, objs = xref_stream_entries(data), objects_of(data)
    self_contained = entries[6] == (2, 6, 0)
    mutual = entries[6][:2] == (2, 7) and entries[7][:2] == (2, 6)
    extends_self = b"/Extends 6 0 R" in objs[6]
    back_reference = entries[1] == (2, 6, 0) and b"/Stm 6 0 R" in zlib.decompress(stream_data(objs[6])) \
        if b"Filter" in objs[6] else b"/Stm 6 0 R" in stream_data(objs[6])
    assert b"/Type /ObjStm" in objs[6] and (self_contained or mutual or extends_self or back_reference)


def check_prev_loop(data):
    offsets = [int(x) for x in re.findall(rb"startxref\n(\d+)", data)]
    seen, at = [], offsets[-1]
    while at not in seen:  # follow /Prev from the last xref: it must come back
        seen.append(at)
        prev = re.search(rb"/Prev (\d+)", data[at:])
        assert prev is not None, "the chain ended"
        at = int(prev.group(1))
    assert at in offsets
    if len(offsets) == 1:
        assert at == offsets[0]  # the xref's own offset


def check_rebuild_storm(data):
    pointer = int(re.findall(rb"startxref\n(\d+)", data)[-1])
    assert not data[pointer:].startswith((b"xref", b"%d 0 obj" % 9))
    assert len(re.findall(rb"\d+ 0 obj [^\n]*0 0 R", data)) >= 100


def kids_graph(objs: dict[int, bytes]) -> dict[int, list[int]]:
    return {n: [int(k) for k in re.findall(rb"(\d+) 0 R", m.group(1))]
            for n, body in objs.items() if (m := re.search(rb"/Kids \[([^\]]*)\]", body))}


def check_page_tree_cycle(data):
    graph, at, seen = kids_graph(objects_of(data)), 2, set()
    while at in graph and at not in seen:
        seen.add(at)
        at = graph[at][0]
    assert at in seen


def check_page_tree_depth(data):
    objs = objects_of(data)
    (stm,) = [b for b in objs.values() if b"/Type /ObjStm" in b]
    text = zlib.decompress(stream_data(stm))
    first = int(re.search(rb"/First (\d+)", stm).group(1))
    header = [int(x) for x in text[:first].split()]
    offsets = header[1::2] + [len(text) - first]
    packed = {num: text[first + a : first + b] for num, a, b in zip(header[::2], offsets, offsets[1:])}
    graph, at, depth = kids_graph({**objs, **packed}), 2, 0
    while at in graph:
        at, depth = graph[at][0], depth + 1
    assert depth > 100 and at == 3


def check_missing_root(data):
    assert b"/Root" not in data
    assert int(re.findall(rb"/Size (\d+)", data)[-1]) >= 2 * 10**9


def check_outline_cycle(data):
    objs = objects_of(data)
    edges = {n: [int(x) for x in re.findall(rb"/(?:First|Next) (\d+) 0 R", objs[n])] for n in (7, 8)}

    def reaches(start, goal, seen=()):
        return any(k == goal or (k in edges and k not in seen and reaches(k, goal, (*seen, k))) for k in edges.get(start, []))

    assert reaches(7, 7) or reaches(8, 8)


def check_xmp_laughs(data):
    dictionary, raw = [s for s in attack_streams(data) if b"/Metadata" in s[0]][0]
    xml = zlib.decompress(raw) if b"Flate" in dictionary else raw
    levels = re.findall(rb'<!ENTITY lol(\d+) "([^"]*)">', xml)
    fanout = min(len(re.findall(rb"&lol\d+;", body)) for _, body in levels[1:])
    assert fanout ** (len(levels) - 1) >= 10**6


def check_slow_filter(data):
    filters, raw = payload(data, b"ASCIIHexDecode")
    assert filters == [b"FlateDecode", b"ASCIIHexDecode"]
    assert inflate(raw, 1 << 20) == b"20" * (1 << 19)


def check_huge_array(data):
    contents = re.search(rb"/Contents \[([^\]]*)\]", data)
    count = len(re.findall(rb"4 0 R", contents.group(1))) if contents else len(re.findall(rb"0 ", stream_data(objects_of(data)[4])))
    assert count >= 1000


def check_inline_image_no_ei(data):
    content = stream_data(objects_of(data)[4])
    assert b" ID " in content and not re.search(rb"\sEI(\s|$)", content.split(b" ID ", 1)[1])


def check_eof_comment(data):
    assert data.rsplit(b"\n", 1)[-1].startswith(b"%") and not data.endswith(b"%%EOF\n")


def check_aes_ascii85(data):
    assert b"/AESV2" in data and b"/Filter /ASCII85Decode" in objects_of(data)[4]
    with pikepdf.open(io.BytesIO(data)) as pdf:  # the empty user password is accepted
        assert pdf.is_encrypted and pdf.encryption.stream_method.name == "aes"


ATTACK_CHECKS = {name[len("check_"):]: f for name, f in globals().items() if name.startswith("check_")}


def test_every_attack_kind_has_a_check():
    assert set(ATTACK_CHECKS) == set(ATTACK_KINDS)


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_attack_strategy_produces_its_attack(kind):
    @settings(FAST, max_examples=6)
    @given(attack_pdfs(kinds=[kind]))
    def check(data):
        assert data.startswith(b"%PDF-") and len(data) <= 64 * 1024
        ATTACK_CHECKS[kind](data)

    check()


def test_deflate_repeated_is_a_correct_zlib_stream():
    chunk = bytes(range(256)) * 8
    assert zlib.decompress(deflate_repeated(chunk, 37, prefix=b"head", suffix=b"tail")) == b"head" + chunk * 37 + b"tail"


@settings(FAST, max_examples=20)
@given(malformed_pdfs(max_size=8192))
def test_malformed_pdfs_respect_max_size(data):
    assert len(data) <= 8192
