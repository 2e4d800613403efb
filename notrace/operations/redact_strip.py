"""What redact removes from the whole document, besides the text of the pages it rebuilds.
Runs in the CHILD, on a pikepdf document whose annotations were flattened already
(flatten.flatten_document: what a reader saw of them is page content, where the term
search finds its text and the rasterizer draws it).

By allowlist, not blocklist: whatever a key we do not know may carry (private data,
a future PDF feature) goes too.
- The trailer keeps /Root and /Size (save_pdf writes a fresh /ID): /Info goes.
- The catalog keeps only how the document is shown (CATALOG_KEEPS). Gone with the rest:
  /Metadata (XMP), /Outlines (bookmark titles are text no page shows: they may name what
  a box hides), /Names (named destinations, embedded files, JavaScript), /Dests,
  /AcroForm (field values), /StructTreeRoot (/Alt and /ActualText of tagged PDF),
  /PageLabels (label prefixes), /OpenAction, /AA, /Threads, /AF, /Collection, /PieceInfo,
  /SpiderInfo, /Perms, /Legal, /URI.
- Every page keeps only PAGE_KEEPS: its annotations (links too: their URIs and
  destinations), /Thumb, /Metadata, /PieceInfo, /AA, /B (article beads), /AF,
  /StructParents... go; and resources its content does not use (a form XObject with text
  no page draws, which neither engine's text shows) are removed.
- Page-tree nodes keep PAGE_TREE_KEEPS (their inherited attributes).
- /Metadata (XMP) and /PieceInfo go from every object that has them: images, forms and
  fonts carry their own.
- Optional content (layers) is kept, since dropping it would show hidden layers; each
  layer's /Name becomes "Layer N", configurations lose their names, creators and /Order
  (which may hold text labels).
Every walk is bounded by the page count and a visited set (hostile page trees loop).
"""
from __future__ import annotations

import pikepdf
from pikepdf import String

__all__ = ["CATALOG_KEEPS", "PAGE_KEEPS", "PAGE_TREE_KEEPS", "strip_document"]

TRAILER_KEEPS = frozenset({"/Root", "/Size"})
CATALOG_KEEPS = frozenset({"/Type", "/Pages", "/Version", "/Extensions", "/PageLayout",
                           "/PageMode", "/ViewerPreferences", "/Lang", "/OCProperties"})
PAGE_KEEPS = frozenset({"/Type", "/Parent", "/Resources", "/Contents", "/MediaBox",
                        "/CropBox", "/BleedBox", "/TrimBox", "/ArtBox", "/Rotate",
                        "/UserUnit", "/Group"})
PAGE_TREE_KEEPS = frozenset({"/Type", "/Parent", "/Kids", "/Count", "/Resources",
                             "/MediaBox", "/CropBox", "/Rotate"})
_LAYER_KEEPS = frozenset({"/Type", "/Name", "/Intent"})
_CONFIG_DROPS = ("/Name", "/Creator", "/Order")
_ANYWHERE_DROPS = ("/Metadata", "/PieceInfo")


def _keep_only(holder, keys: frozenset, removed: set[str]) -> None:
    for key in list(holder.keys()):
        if key not in keys:
            del holder[key]
            removed.add(key.lstrip("/"))


def strip_document(pdf: pikepdf.Pdf) -> dict:
    """Strip `pdf` in place (see the module doc); the report: what kinds were removed and
    how many annotations."""
    removed: set[str] = set()
    _keep_only(pdf.trailer, TRAILER_KEEPS, removed)
    _keep_only(pdf.Root, CATALOG_KEEPS, removed)
    annotations = 0
    nodes_seen: set[tuple[int, int]] = set()
    for page in pdf.pages:
        annots = page.obj.get("/Annots")
        if isinstance(annots, pikepdf.Array):
            annotations += len(annots)
        _keep_only(page.obj, PAGE_KEEPS, removed)
        page.remove_unreferenced_resources()
        node = page.obj.get("/Parent")
        while isinstance(node, pikepdf.Dictionary) and node.is_indirect \
                and node.objgen not in nodes_seen:
            nodes_seen.add(node.objgen)
            _keep_only(node, PAGE_TREE_KEEPS, removed)
            node = node.get("/Parent")
    _anonymise_layers(pdf.Root.get("/OCProperties"))
    for obj in pdf.objects:  # XMP and private data of images, forms, fonts: anywhere
        if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
            for key in _ANYWHERE_DROPS:
                if key in obj:
                    del obj[key]
                    removed.add(key.lstrip("/"))
    removed.discard("Annots")
    return {"removed": sorted(removed), "annotations": annotations}


def _anonymise_layers(properties) -> None:
    if not isinstance(properties, pikepdf.Dictionary):
        return
    layers = properties.get("/OCGs")
    if isinstance(layers, pikepdf.Array):
        for n, layer in enumerate(layers, start=1):
            if isinstance(layer, pikepdf.Dictionary):
                _keep_only(layer, _LAYER_KEEPS, set())
                layer.Name = String(f"Layer {n}")
    configs = properties.get("/Configs")
    configs = list(configs) if isinstance(configs, pikepdf.Array) else []
    for config in [properties.get("/D"), *configs]:
        if isinstance(config, pikepdf.Dictionary):
            for key in _CONFIG_DROPS:
                if key in config:
                    del config[key]
