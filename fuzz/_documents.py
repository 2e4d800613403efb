"""Valid documents: page trees, content streams through filter chains, xref tables or
streams, object streams, incremental updates and RC4 encryption.

Runs in the test process or a fuzz driver. Page n shows the text "page n", so any operation
that reorders, drops or duplicates pages can be checked from the output alone.
"""
from __future__ import annotations

import random

from hypothesis import strategies as st

from fuzz._crypt import StandardSecurity
from fuzz._filters import FILTER_NAMES, FilterChain, Predictor
from fuzz._objects import objects
from fuzz._syntax import HexString, Name, Ref, Revision, Stream, Written, write_pdf

XREF_KINDS = ("table", "stream", "any")
ENCRYPTIONS = ("none", "rc4", "any")

predictors = st.builds(
    Predictor,
    kind=st.sampled_from((2, 10, 11, 12, 13, 14, 15)),
    colors=st.integers(1, 4),
    bits=st.sampled_from((8, 16)),
    max_columns=st.integers(1, 80),
)
# pypdf undoes the TIFF predictor byte by byte, which is only right for 8-bit samples.
readable_predictors = predictors.filter(lambda p: p.kind != 2 or p.bits == 8)
# Built once: constructing strategies inside every draw is a measurable share of the cost.
_STAGE_PREDICTORS = {True: st.none() | readable_predictors, False: st.none() | predictors}


@st.composite
def chains(draw, *, min_length: int = 0, max_length: int = 3, readable: bool = True) -> FilterChain:
    """A filter chain. readable=True keeps to what both pikepdf and pypdf decode
    (pypdf ignores predictors on LZW, so LZW stages get none, and mistreats 16-bit TIFF)."""
    names = draw(st.lists(st.sampled_from(FILTER_NAMES), min_size=min_length, max_size=max_length))
    stages = tuple(
        draw(_STAGE_PREDICTORS[readable])
        if name == "FlateDecode" or (name == "LZWDecode" and not readable) else None
        for name in names
    )
    return FilterChain(tuple(names), stages)


class _Numbers:
    """Hands out object numbers in a drawn order (gaps and shuffles are both legal)."""

    def __init__(self, order: list[int], gens: list[int]) -> None:
        self._order, self._gens, self.gens = list(order), list(gens), {}

    def new(self) -> Ref:
        num = self._order.pop(0)
        gen = self._gens.pop(0) if self._gens else 0
        if gen:
            self.gens[num] = gen
        return Ref(num, gen)


def page_content(draw, number: int) -> list[bytes]:
    """Content stream(s) of page `number`: its label, sometimes after some graphics,
    sometimes split across two streams (readers must concatenate /Contents arrays)."""
    label = b"page %d" % number
    token = draw(st.sampled_from((b"(" + label + b")", b"<" + label.hex().encode() + b">")))
    x, y, size = draw(st.integers(36, 300)), draw(st.integers(36, 700)), draw(st.integers(8, 36))
    text = b"BT /F1 %d Tf %d %d Td %s Tj ET\n" % (size, x, y, token)
    graphics = draw(st.sampled_from((b"", b"q 0.5 g 10 10 50 50 re f Q\n", b"% a comment\nq 1 0 0 1 0 0 cm Q\n")))
    if graphics and draw(st.booleans()):
        return [graphics, text]
    return [graphics + text]


def _page_tree(draw, numbers: _Numbers, kids: list[Ref], fanout: int, objs: dict, parent: Ref | None,
               counts: dict) -> Ref:
    """A /Pages node over `kids` (page refs), splitting into child nodes above `fanout`."""
    node = numbers.new()
    if len(kids) > fanout:
        size = -(-len(kids) // fanout)
        groups = [kids[i : i + size] for i in range(0, len(kids), size)]
        children = [_page_tree(draw, numbers, group, fanout, objs, node, counts) for group in groups]
    else:
        children = kids
        for kid in kids:
            objs[kid.num]["Parent"] = node
    counts[node.num] = sum(counts.get(child.num, 1) for child in children)
    objs[node.num] = {"Type": Name("Pages"), "Kids": children, "Count": counts[node.num]}
    if parent is not None:
        objs[node.num]["Parent"] = parent
    return node


@st.composite
def documents(draw, *, min_pages: int = 1, max_pages: int = 5, xref: str = "any",
              encryption: str = "none", max_updates: int = 2) -> Written:
    pages = draw(st.integers(min_pages, max_pages))
    encrypted = encryption == "rc4" or (encryption == "any" and draw(st.booleans()))
    kinds = [draw(st.sampled_from(("table", "stream"))) if xref == "any" else xref
             for _ in range(1 + draw(st.integers(0, max_updates)))]
    pack = kinds[0] == "stream" and not encrypted and draw(st.booleans())
    capacity = 4 * pages + 12
    # Object numbers and generations from one drawn seed: st.permutations and a list of
    # generations took two draws per object (up to ~70 of a document's ~100), and their
    # order matters to no reader, so shrinking them bought nothing.
    numbering = random.Random(draw(st.integers(0, 2**32 - 1)))
    order = numbering.sample(range(1, capacity + 1), capacity)
    gens = [] if pack or not draw(st.booleans()) else [numbering.randint(0, 3) for _ in range(capacity)]
    numbers = _Numbers(order, gens)
    objs: dict = {}

    font = numbers.new()
    objs[font.num] = {"Type": Name("Font"), "Subtype": Name("Type1"), "BaseFont": Name("Helvetica"),
                      "Encoding": Name("WinAnsiEncoding")}
    resources = {"Font": {"F1": font}}
    inherit = draw(st.booleans())  # Resources and MediaBox on the root (inherited) or per page
    box = [0, 0, draw(st.integers(100, 1000)), draw(st.integers(100, 1000))]
    page_refs, contents = [], {}
    for number in range(1, pages + 1):
        page = numbers.new()
        streams = []
        for part in page_content(draw, number):
            ref = numbers.new()
            streams.append(ref)
            contents[ref.num] = (part, draw(chains()))
        objs[page.num] = {"Type": Name("Page"), "Contents": streams[0] if len(streams) == 1 else streams}
        if not inherit:
            objs[page.num].update(Resources=resources, MediaBox=box)
        if draw(st.booleans()):
            objs[page.num]["Rotate"] = draw(st.sampled_from((0, 90, 180, 270, -90)))
        page_refs.append(page)
    root_pages = _page_tree(draw, numbers, page_refs, draw(st.integers(2, 8)), objs, None, {})
    if inherit:
        objs[root_pages.num].update(Resources=resources, MediaBox=box)
    catalog = numbers.new()
    objs[catalog.num] = {"Type": Name("Catalog"), "Pages": root_pages}
    if draw(st.booleans()):
        extra = numbers.new()  # an object nothing needs, in any legal spelling
        objs[extra.num] = draw(objects(with_references=False))
        objs[catalog.num]["NotraceExtra"] = extra
    trailer: dict = {"Root": catalog}
    if draw(st.booleans()):
        info = numbers.new()
        title = draw(st.text(max_size=16))
        objs[info.num] = {"Producer": b"notrace fuzz",
                          "Title": b"\xfe\xff" + title.encode("utf-16-be") if draw(st.booleans())
                          else title.encode("latin-1", "replace")}
        trailer["Info"] = info
    for num, (part, chain) in contents.items():
        data, entries = chain.encode(part)
        objs[num] = Stream(entries, data)

    security = None
    if encrypted:
        security = StandardSecurity(revision=draw(st.sampled_from((2, 3))),
                                    owner_password=draw(st.binary(max_size=8)),
                                    document_id=draw(st.binary(min_size=16, max_size=16)))
        encrypt = numbers.new()
        objs[encrypt.num] = security.dictionary()
        trailer.update(Encrypt=encrypt, ID=[HexString(security.document_id), HexString(security.document_id)])

    packed = frozenset(draw(st.sets(st.sampled_from(sorted(n for n, o in objs.items() if not isinstance(o, Stream))))))\
        if pack else frozenset()
    revisions = [Revision(objs, trailer, kinds[0], packed, numbers.gens, draw(st.booleans()))]
    for kind in kinds[1:]:
        revisions.append(Revision(_update(draw, objs, contents, trailer), trailer, kind, gens=numbers.gens))

    def crypt_for(num: int, gen: int):
        return None if security is None or num == trailer["Encrypt"].num else security.rc4_crypt(num, gen)

    return write_pdf(revisions, version="1.7" if "stream" in kinds else draw(st.sampled_from(("1.3", "1.4", "1.6"))),
                     eol=draw(st.sampled_from((b"\n", b"\r\n"))), crypt_for=crypt_for)


def _update(draw, objs: dict, contents: dict, trailer: dict) -> dict:
    """An incremental update that rewrites some objects with the same meaning: content
    streams re-encoded through another chain, the catalog, the info dictionary."""
    changed: dict = {}
    for num in draw(st.sets(st.sampled_from(sorted(contents)), max_size=2)):
        part, _ = contents[num]
        data, entries = draw(chains()).encode(part)
        changed[num] = Stream(entries, data)
    catalog = trailer["Root"].num
    if draw(st.booleans()):
        changed[catalog] = {**objs[catalog], "PageMode": Name(draw(st.sampled_from(("UseNone", "UseThumbs"))))}
    if "Info" in trailer:
        changed[trailer["Info"].num] = {**objs[trailer["Info"].num], "ModDate": b"D:20240101000000Z"}
    return changed or {catalog: objs[catalog]}
