"""Builders of small test documents and images, shared by the operation, HTTP and fuzz
tests. Every builder returns bytes and runs in the test process (never in a sandbox).

Pages carry distinct text ("page 1", "page 2", ...; optionally prefixed by a marker such
as "A" to tell documents apart), so order survives checking with `page_texts()`.
Active-content documents embed the strings in `MARKERS`, so a test can check on the raw
output bytes that something is gone (all streams are written uncompressed here).
"""
from __future__ import annotations

import io

import pikepdf
from pikepdf import Array, Dictionary, Name, String
from PIL import Image

__all__ = ["MARKERS", "make_pdf", "make_encrypted_pdf", "make_active_pdf", "make_form_pdf",
           "make_image_png", "make_image_jpeg", "page_texts", "open_any"]

#: Strings planted by make_active_pdf, by what carries them.
MARKERS = {
    "javascript": "NTJS_NAMES_TREE",
    "open_action": "NTJS_OPEN_ACTION",
    "page_aa": "NTJS_PAGE_AA",
    "field_aa": "NTJS_FIELD_AA",
    "launch": "NTLAUNCH_CMD",
    "embedded_file": "NTEMBEDDED_SECRET",
    "attachment": "NTATTACHED_SECRET",
    "title": "NTTITLE_SECRET",
    "xmp": "NTXMP_SECRET",
    "xfa": "NTXFA_SECRET",
    "thumbnail": "NTTHUMB_SECRET",
    "link": "https://example.invalid/NTLINK",
}


def _font(pdf: pikepdf.Pdf) -> pikepdf.Object:
    return pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica,
                                        Encoding=Name.WinAnsiEncoding))


def _text_page(pdf: pikepdf.Pdf, font, line: str, size: tuple[float, float]) -> pikepdf.Page:
    content = pikepdf.unparse_content_stream([
        ([], pikepdf.Operator("BT")), ([Name.F1, 12], pikepdf.Operator("Tf")),
        ([72, size[1] - 92], pikepdf.Operator("Td")),
        ([String(line)], pikepdf.Operator("Tj")), ([], pikepdf.Operator("ET"))])
    page = pikepdf.Page(Dictionary(Type=Name.Page, MediaBox=[0, 0, *size],
                                   Resources=Dictionary(Font=Dictionary(F1=font)),
                                   Contents=pdf.make_stream(content)))
    pdf.pages.append(page)
    return pdf.pages[-1]


def _build(pages: int, text: str, marker: str | None, size, rotate) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    font = _font(pdf)
    for n in range(1, pages + 1):
        line = text.format(n=n)
        page = _text_page(pdf, font, f"{marker} {line}" if marker else line, size)
        if rotate:
            page.obj.Rotate = rotate
    return pdf


def _save(pdf: pikepdf.Pdf, **options) -> bytes:
    out = io.BytesIO()
    pdf.save(out, compress_streams=False, deterministic_id=not options.get("encryption"),
             **options)
    return out.getvalue()


def make_pdf(pages: int = 3, text: str = "page {n}", *, marker: str | None = None,
             size: tuple[float, float] = (612, 792), rotate: int | None = None) -> bytes:
    """A PDF of `pages` pages, each showing text.format(n=page number) in Helvetica,
    prefixed by `marker` and a space when given; every page gets /Rotate `rotate`."""
    return _save(_build(pages, text, marker, size, rotate))


def make_encrypted_pdf(pages: int = 2, *, user: str = "secret", owner: str | None = None,
                       marker: str | None = None) -> bytes:
    """make_pdf(pages, marker=marker) encrypted with AES-256 (R6)."""
    pdf = _build(pages, "page {n}", marker, (612, 792), None)
    return _save(pdf, encryption=pikepdf.Encryption(user=user, owner=owner or user, R=6))


def make_active_pdf(pages: int = 2) -> bytes:
    """A document with everything sanitize removes, each carrying a MARKERS string:
    document info and XMP, a JavaScript name tree, a JavaScript /OpenAction, page /AA, a
    form field with /AA and an XFA entry, a Launch action on an annotation, an embedded
    file (name tree) and a FileAttachment annotation, a thumbnail, and a URI link."""
    pdf = _build(pages, "page {n}", None, (612, 792), None)
    m = MARKERS
    js = lambda code: Dictionary(S=Name.JavaScript, JS=String(code))  # noqa: E731
    pdf.docinfo["/Title"] = String(m["title"])
    pdf.docinfo["/Author"] = String("Someone")
    xmp = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
           f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{m["xmp"]}</rdf:li></rdf:Alt>'
           '</dc:title></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    pdf.Root.Metadata = pdf.make_stream(xmp.encode(), Type=Name.Metadata,
                                        Subtype=Name.XML)
    pdf.Root.OpenAction = pdf.make_indirect(js(f"app.alert('{m['open_action']}')"))
    embedded = pdf.make_stream(m["embedded_file"].encode(), Type=Name.EmbeddedFile)
    filespec = Dictionary(Type=Name.Filespec, F=String("a.txt"), EF=Dictionary(F=embedded))
    pdf.Root.Names = Dictionary(
        JavaScript=Dictionary(Names=Array([String("init"),
                                           pdf.make_indirect(js(m["javascript"]))])),
        EmbeddedFiles=Dictionary(Names=Array([String("a.txt"), pdf.make_indirect(filespec)])))
    first = pdf.pages[0].obj
    first.AA = Dictionary(O=js(m["page_aa"]))
    first.Thumb = pdf.make_stream(m["thumbnail"].encode(), Width=1, Height=1,
                                  ColorSpace=Name.DeviceGray, BitsPerComponent=8)
    attached = pdf.make_stream(m["attachment"].encode(), Type=Name.EmbeddedFile)
    attachment = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.FileAttachment, Rect=[10, 10, 30, 30],
        FS=Dictionary(Type=Name.Filespec, F=String("b.txt"), EF=Dictionary(F=attached))))
    launch = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Link, Rect=[40, 10, 60, 30],
        A=Dictionary(S=Name.Launch, F=String(m["launch"]))))
    link = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Link, Rect=[70, 10, 90, 30],
        A=Dictionary(S=Name.URI, URI=String(m["link"]))))
    field = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, FT=Name.Tx, T=String("name"),
        Rect=[100, 10, 200, 30], P=first, AA=Dictionary(K=js(m["field_aa"]))))
    first.Annots = Array([attachment, launch, link, field])
    pdf.Root.AcroForm = Dictionary(Fields=Array([field]),
                                   XFA=pdf.make_stream(m["xfa"].encode()))
    return _save(pdf)


def make_form_pdf() -> bytes:
    """One page with a filled text field (value "FIELDVALUE", with an appearance stream)
    and a Square annotation with an appearance: what flatten draws into the page."""
    pdf = _build(1, "page {n}", None, (612, 792), None)
    font = _font(pdf)
    page = pdf.pages[0].obj
    appearance = pdf.make_stream(
        b"BT /F1 10 Tf 2 5 Td (FIELDVALUE) Tj ET", Type=Name.XObject, Subtype=Name.Form,
        BBox=[0, 0, 100, 20], Resources=Dictionary(Font=Dictionary(F1=font)))
    field = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, FT=Name.Tx, T=String("name"),
        V=String("FIELDVALUE"), Rect=[100, 600, 200, 620], P=page,
        AP=Dictionary(N=appearance)))
    square_ap = pdf.make_stream(b"0 0 1 rg 0 0 20 20 re f", Type=Name.XObject,
                                Subtype=Name.Form, BBox=[0, 0, 20, 20])
    square = pdf.make_indirect(Dictionary(Type=Name.Annot, Subtype=Name.Square,
                                          Rect=[300, 600, 320, 620], P=page,
                                          AP=Dictionary(N=square_ap)))
    page.Annots = Array([field, square])
    pdf.Root.AcroForm = Dictionary(Fields=Array([field]),
                                   DR=Dictionary(Font=Dictionary(F1=font)))
    return _save(pdf)


def _image(width: int, height: int, mode: str) -> Image.Image:
    image = Image.new(mode, (width, height))
    # A gradient, so that resampling and re-encoding have something to change.
    for x in range(width):
        for y in range(height):
            v = (x * 255 // max(1, width - 1) + y * 255 // max(1, height - 1)) // 2
            image.putpixel((x, y), {"L": v, "RGB": (v, 255 - v, 128),
                                    "RGBA": (v, 255 - v, 128, 200), "LA": (v, 200)}[mode])
    return image


def make_image_png(width: int = 40, height: int = 30, *, mode: str = "RGB",
                   dpi: int | None = None) -> bytes:
    """A PNG gradient; mode "L", "RGB", "RGBA" or "LA"."""
    out = io.BytesIO()
    _image(width, height, mode).save(out, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return out.getvalue()


def make_image_jpeg(width: int = 40, height: int = 30, *, mode: str = "RGB",
                    quality: int = 90) -> bytes:
    """A JPEG gradient; mode "L" or "RGB"."""
    out = io.BytesIO()
    _image(width, height, mode).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def open_any(data: bytes, password: str = "") -> pikepdf.Pdf:
    """pikepdf.open on bytes."""
    return pikepdf.open(io.BytesIO(data), password=password)


def page_texts(data: bytes, password: str = "") -> list[str]:
    """Text of each page with pypdf (decrypted through pikepdf first: pypdf here has no
    AES), stripped."""
    import pypdf  # local: test helper, keeps importing this module light for fuzzers

    if password:
        with open_any(data, password) as pdf:
            out = io.BytesIO()
            pdf.save(out)
            data = out.getvalue()
    reader = pypdf.PdfReader(io.BytesIO(data))
    return [page.extract_text().strip() for page in reader.pages]
