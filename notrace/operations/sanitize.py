"""sanitize: strip metadata and active content. Runs in the CHILD.

Removal is by unlinking: qpdf writes only objects reachable from the trailer, so an
unlinked script, file or metadata stream is absent from the output bytes (checked by the
tests on the raw output).
"""
from __future__ import annotations

import collections

import pikepdf

from notrace.operations import active
from notrace.operations._common import Output, open_pdf, pdf_output


def sanitize(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Remove document info, XMP (catalog and pages) and /PieceInfo, JavaScript (name
    tree and actions), /OpenAction, every /AA, dangerous /A actions (active.py), embedded
    files (name tree, /AF, portfolio /Collection, file attachment and rich media
    annotations), thumbnails and XFA; with remove_links, link annotations. The report
    counts each kind removed."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    removed: collections.Counter[str] = collections.Counter()

    if "/Info" in pdf.trailer:
        del pdf.trailer["/Info"]
        removed["document_info"] += 1
    root = pdf.Root
    for key, what in (("/JavaScript", "javascript"), ("/EmbeddedFiles", "embedded_files")):
        tree = active.names_entry(pdf, key)
        if tree is not None:
            removed[what] += max(1, active.name_tree_size(tree))
            del root.Names[key]
    if active.xfa_present(pdf):
        del root.AcroForm["/XFA"]
        removed["xfa"] += 1
    for key, what in (("/OpenAction", "open_action"), ("/NeedsRendering", "xfa"),
                      ("/Collection", "embedded_files"), ("/AF", "embedded_files")):
        if key in root:
            del root[key]
            removed[what] += 1

    _remove_annotations(pdf, params["remove_links"], removed)
    for where, holder in active.action_holders(pdf):
        _remove_actions(holder, removed)
        if where == "page":
            for key, what in (("/Thumb", "thumbnails"), ("/AF", "embedded_files")):
                if key in holder:
                    del holder[key]
                    removed[what] += 1
        if where in ("catalog", "page"):
            for key, what in (("/Metadata", "xmp_metadata"), ("/PieceInfo", "piece_info")):
                if key in holder:
                    del holder[key]
                    removed[what] += 1

    return pdf_output(pdf, {"removed": dict(sorted(removed.items()))})


def _remove_actions(holder: pikepdf.Dictionary, removed: collections.Counter) -> None:
    if "/AA" in holder:
        del holder["/AA"]
        removed["additional_actions"] += 1
    if "/A" not in holder:
        return
    kinds = active.action_types(holder.get("/A"))
    dangerous = kinds & active.DANGEROUS_ACTIONS
    if not dangerous:
        return
    del holder["/A"]
    if "/JavaScript" in dangerous:
        removed["javascript"] += 1
    elif "/Launch" in dangerous:
        removed["launch_actions"] += 1
    else:
        removed["other_actions"] += 1


def _remove_annotations(pdf: pikepdf.Pdf, remove_links: bool,
                        removed: collections.Counter) -> None:
    """Drop file/media annotations (and links if asked), with the pop-ups attached to
    them, which would otherwise keep them reachable through /Parent."""
    doomed = {"/FileAttachment": "file_attachment_annotations",
              "/RichMedia": "file_attachment_annotations"}
    if remove_links:
        doomed["/Link"] = "links"
    for page in pdf.pages:
        annots = page.obj.get("/Annots")
        if not isinstance(annots, pikepdf.Array):
            continue
        kinds = [str(a.get("/Subtype")) if isinstance(a, pikepdf.Dictionary) else ""
                 for a in annots]
        gone = {a.objgen for a, kind in zip(annots, kinds) if kind in doomed and a.is_indirect}
        kept = []
        for annot, kind in zip(annots, kinds):
            if kind in doomed:
                removed[doomed[kind]] += 1
                continue
            parent = annot.get("/Parent") if kind else None
            if isinstance(parent, pikepdf.Dictionary) and parent.is_indirect \
                    and parent.objgen in gone:
                continue  # the pop-up of a removed annotation
            kept.append(annot)
        if len(kept) != len(annots):
            page.obj.Annots = pikepdf.Array(kept)
