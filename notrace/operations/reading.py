"""`info`: JSON about a document (`text` is in text.py). Runs in the CHILD."""
from __future__ import annotations

import pikepdf

from notrace.operations import active
from notrace.operations._common import (Output, json_output, open_pdf, page_box,
                                        page_rotation)

#: Document information keys reported by info, and the longest value shown (characters).
INFO_KEYS = ("Title", "Author", "Subject", "Keywords", "Creator", "Producer",
             "CreationDate", "ModDate")
MAX_INFO_VALUE = 2000


def info(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """pages, version, encrypted, page sizes (visible box, points) and rotation, document
    information, and whether JavaScript, embedded files, forms or signatures are present."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    sizes = []
    for page in pdf.pages:
        x0, y0, x1, y1 = page_box(page)
        sizes.append({"width": round(x1 - x0, 2), "height": round(y1 - y0, 2),
                      "rotate": page_rotation(page)})
    field_types = {str(f.get("/FT")) for f in active.fields(pdf)}
    acroform = pdf.Root.get("/AcroForm")
    sig_flags = acroform.get("/SigFlags", 0) if isinstance(acroform, pikepdf.Dictionary) else 0
    # One walk of the pages' annotations (action_holders yields each of them once): a
    # second one only for their subtypes cost as much again on every page.
    annot_types: set[str] = set()
    actions: set[str] = set()
    for where, holder in active.action_holders(pdf):
        if where == "annotation" and "/Subtype" in holder:
            annot_types.add(str(holder.get("/Subtype")))
        for key in ("/A", "/OpenAction"):
            if key in holder:
                actions |= active.action_types(holder.get(key))
        aa = holder.get("/AA") if "/AA" in holder else None  # see _common.page_box
        if isinstance(aa, pikepdf.Dictionary):
            for key in aa.keys():
                actions |= active.action_types(aa.get(key))
    result = {
        "pages": len(pdf.pages),
        "version": str(pdf.pdf_version),
        "encrypted": bool(pdf.is_encrypted),
        "linearized": bool(pdf.is_linearized),
        "page_sizes": sizes,
        "metadata": _docinfo(pdf),
        "has_xmp_metadata": "/Metadata" in pdf.Root,
        "has_javascript": active.names_entry(pdf, "/JavaScript") is not None
                          or "/JavaScript" in actions,
        "has_embedded_files": active.names_entry(pdf, "/EmbeddedFiles") is not None
                              or bool(annot_types & active.FILE_ANNOTATIONS),
        "has_forms": bool(field_types) or active.xfa_present(pdf),
        "has_xfa": active.xfa_present(pdf),
        "has_signatures": "/Sig" in field_types
                          or (isinstance(sig_flags, int) and bool(sig_flags & 1)),
        "has_open_action": "/OpenAction" in pdf.Root,
    }
    return json_output("info.json", result)


def _docinfo(pdf: pikepdf.Pdf) -> dict:
    info_dict = pdf.trailer.get("/Info")
    if not isinstance(info_dict, pikepdf.Dictionary):
        return {}
    out = {}
    for key in INFO_KEYS:
        value = info_dict.get("/" + key)
        if isinstance(value, pikepdf.String):
            out[key.lower()] = str(value)[:MAX_INFO_VALUE]
    return out
