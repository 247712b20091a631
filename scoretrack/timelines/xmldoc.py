"""The XML writers' two helpers: an element with its attributes, and the indented document."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree


def xml_child(parent: ElementTree.Element, tag: str, text=None, **attributes) -> ElementTree.Element:
    """Append an element with ``attributes`` (and ``text``) to ``parent``; return it. The XML writers' one builder."""
    element = ElementTree.SubElement(parent, tag, {key: str(value) for key, value in attributes.items()})
    if text is not None:
        element.text = str(text)
    return element


def xml_document(root: ElementTree.Element, *, doctype: str | None = None) -> bytes:
    """An indented UTF-8 document with its declaration (and ``<!DOCTYPE doctype>``)."""
    ElementTree.indent(root, space="\t")
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' + (f"<!DOCTYPE {doctype}>\n" if doctype else "")
    return head.encode() + ElementTree.tostring(root, encoding="unicode").encode() + b"\n"
