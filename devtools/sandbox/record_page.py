"""The portal's record pages, as the admin links to them: ``/crm/deal/details/<id>/``, ``/crm/contact/details/<id>/``.

A real portal shows the deal or contact there; the sandbox shows its stored
fields in a plain HTML table, so that the admin's "open in Bitrix24" links
work in development. Read-only, no authentication (the sandbox binds to
127.0.0.1), every value escaped.
"""

from __future__ import annotations

import html
import json
import re

from devtools.sandbox import crm
from devtools.sandbox.portal import Reply

PATH = re.compile(r"^/crm/(?P<entity>deal|contact)/details/(?P<id>\d{1,18})/?$")
_HEADLINE = {"deal": ("TITLE",), "contact": ("NAME", "LAST_NAME")}


def handle(store, path: str) -> Reply | None:
    """The page for ``path``, or ``None`` when the path is not a record page."""
    match = PATH.match(path)
    if match is None:
        return None
    entity, record_id = match["entity"], int(match["id"])
    record = store.get(entity, record_id)
    if record is None:
        return Reply(404, html=_page(f"{entity.title()} {record_id} not found", "<p>No such record.</p>"))
    answer = crm.as_answer(record)
    headline = " ".join(str(answer.get(key) or "") for key in _HEADLINE[entity]).strip() or f"#{record_id}"
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_text(value))}</td></tr>"
        for key, value in sorted(answer.items())
    )
    title = f"{entity.title()} #{record_id}: {headline}"
    return Reply(200, html=_page(title, f"<table>{rows}</table>"))


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _page(title: str, body: str) -> str:
    escaped = html.escape(title)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escaped} · Bitrix24 sandbox</title>"
        "<style>body{font:14px sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style></head>"
        f"<body><p>Bitrix24 sandbox (development)</p><h1>{escaped}</h1>{body}</body></html>"
    )
