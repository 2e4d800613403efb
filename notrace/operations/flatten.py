"""flatten: annotations and form fields become page content. Runs in the CHILD."""
from __future__ import annotations

import pikepdf

from notrace.operations._common import Output, open_pdf, pdf_output


def flatten(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """qpdf generates missing appearance streams for form fields (NeedAppearances), then
    draws every annotation's appearance into its page and removes the annotation; the
    form is dropped when no widget is left. Annotations without an appearance stay as
    they are (qpdf flattens only what has an appearance), counted as "remaining"."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    report = flatten_document(pdf)
    return pdf_output(pdf, report)


def flatten_document(pdf: pikepdf.Pdf) -> dict:
    """Flatten `pdf` in place (see flatten); the report's counts."""
    before = sum(len(p.obj.get("/Annots", ())) for p in pdf.pages
                 if isinstance(p.obj.get("/Annots"), pikepdf.Array))
    if "/AcroForm" in pdf.Root:
        pdf.generate_appearance_streams()
    pdf.flatten_annotations(mode="all")
    left = [a for p in pdf.pages if isinstance(p.obj.get("/Annots"), pikepdf.Array)
            for a in p.obj.Annots if isinstance(a, pikepdf.Dictionary)]
    after = len(left)
    if "/AcroForm" in pdf.Root and not any(a.get("/Subtype") == "/Widget" for a in left):
        del pdf.Root["/AcroForm"]
    return {"flattened": before - after, "remaining": after}
