"""Jobs the benchmarks run: a trivial one and a real pikepdf merge (in-process or in a child)."""
from __future__ import annotations

import io

import pikepdf


def trivial(inputs, params):
    return [b"ok"]


def merge(inputs, params):
    out = pikepdf.new()
    for view in inputs:
        with pikepdf.open(io.BytesIO(view)) as src:
            out.pages.extend(src.pages)
    buffer = io.BytesIO()
    out.save(buffer)
    return [buffer.getvalue()]


def make_pdf(pages: int) -> bytes:
    """A PDF of `pages` pages, each with a line of text."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    for n in range(1, pages + 1):
        page = pdf.add_blank_page(page_size=(612, 792))
        page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        page.Contents = pdf.make_stream(f"BT /F1 24 Tf 72 700 Td (page {n}) Tj ET".encode())
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def warm_up():
    """Fork-server warm-up: run one merge so children start with warm caches."""
    sample = make_pdf(2)
    merge([memoryview(sample), memoryview(sample)], {})


def trivial_canary():
    """The canary job of a trivial Sandbox (see Sandbox's canary): dummy data."""
    return [], {}


def merge_canary():
    """The canary job of a merge Sandbox: two 2-page PDFs, built here, never a user's."""
    sample = make_pdf(2)
    return [sample, sample], {}
