"""Printable reports as PDF/A-3b, rendered offline.

`render_pdf` turns the HTML of a report template (one that extends
`templates/reports/base_print.html`) into a PDF/A-3b file with WeasyPrint, embeds the report's
machine-readable files as PDF/A-3 associated files (`/AF`, with their `/AFRelationship`), and
writes the document-information keys a standard asks for with their exact spelling.

Rendering never leaves the machine: `OfflineFetcher` refuses every URL except `data:` URIs and
the fonts vendored beside this module (DejaVu, licence in `fonts/LICENSE`), so a report looks
the same on every installation and a name typed by a user cannot make the server fetch
anything.
"""

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import pikepdf
from weasyprint import CSS, HTML
from weasyprint import Attachment as WeasyAttachment
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

logger = logging.getLogger(__name__)

FONTS_DIR = Path(__file__).resolve().parent / "fonts"

# The typefaces every printable report uses, from the vendored files only. The family names are
# our own so that nothing falls back silently to whatever the machine has installed.
FONT_FACES = {
    ("Report Sans", "normal", "normal"): "DejaVuSans.ttf",
    ("Report Sans", "bold", "normal"): "DejaVuSans-Bold.ttf",
    ("Report Sans", "normal", "italic"): "DejaVuSans-Oblique.ttf",
    ("Report Mono", "normal", "normal"): "DejaVuSansMono.ttf",
}

FONT_CSS = "\n".join(
    f'@font-face {{ font-family: "{family}"; font-weight: {weight}; font-style: {style};'
    f' src: url("{(FONTS_DIR / file).as_uri()}"); }}'
    for (family, weight, style), file in FONT_FACES.items()
)


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF as a PDF/A-3 associated file.

    `relationship` is the `/AFRelationship` (ISO 32000-2, 7.11.3): "Data" for the data the
    pages render (the dossier's JSON), "Source" for the file the pages were made from (the CHAI
    XML), "Alternative" or "Supplement" otherwise.
    """

    name: str
    data: bytes
    mime: str
    description: str
    relationship: str = "Data"


class RemoteFetchRefused(ValueError):
    """Raised by the offline fetcher for any URL a report may not load."""


class OfflineFetcher(URLFetcher):  # type: ignore[misc]
    """WeasyPrint's URL fetcher for reports: `data:` URIs and the vendored fonts, nothing else.

    Every refused URL raises (WeasyPrint then logs it and renders without the resource) and is
    kept in `refused`, so a test can show what a template or a user's text tried to load.
    """

    def __init__(self) -> None:
        super().__init__(allowed_protocols=("data", "file"), allow_redirects=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file" and self._is_vendored_font(url):
            path = Path(url2pathname(unquote(urlsplit(url).path)))
            return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": "font/ttf"})
        self.refused.append(url)
        raise RemoteFetchRefused(f"Reports are rendered offline; refused to load {url!r}.")

    @staticmethod
    def _is_vendored_font(url: str) -> bool:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return False
        path = Path(url2pathname(unquote(parts.path))).resolve()
        return path.parent == FONTS_DIR and path.name in FONT_FACES.values() and path.is_file()


def render_pdf(
    html: str,
    *,
    title: str,
    attachments: Sequence[Attachment] = (),
    info: Mapping[str, str] | None = None,
) -> bytes:
    """Render a report's HTML to PDF/A-3b bytes, offline.

    `title` goes to the document information dictionary and the XMP `dc:title`. Each of
    `attachments` is embedded byte for byte as an associated file of the document. `info` adds
    document-information keys with exactly the given spelling (WeasyPrint lowercases custom
    keys, and CHAI asks for `chaiMcXml` and `chaiMcSoftwareId`); they are written with pikepdf
    after rendering, which leaves the Info dictionary writable for the seal.
    """
    fetcher = OfflineFetcher()
    # The @font-face rules register the vendored files in this configuration only; it must be
    # the one the document is rendered with, or the families fall back to the machine's fonts.
    fonts = FontConfiguration()
    document = HTML(string=html, url_fetcher=fetcher, base_url=FONTS_DIR.as_uri() + "/").render(
        stylesheets=[CSS(string=FONT_CSS, url_fetcher=fetcher, font_config=fonts)],
        font_config=fonts,
    )
    document.metadata.title = title
    weasy_attachments = [
        WeasyAttachment(
            # A data: URI carries the exact MIME type through WeasyPrint's attachment loader.
            url=_data_uri(attachment.data, attachment.mime),
            url_fetcher=fetcher,
            name=attachment.name,
            description=attachment.description,
            relationship=attachment.relationship,
        )
        for attachment in attachments
    ]
    rendered = document.write_pdf(
        pdf_variant="pdf/a-3b", attachments=weasy_attachments, uncompressed_pdf=False
    )
    if fetcher.refused:
        logger.warning(
            "Report rendering refused %d URL(s): %s", len(fetcher.refused), fetcher.refused
        )
    return _finish(rendered, title=title, attachments=attachments, info=info or {})


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _finish(
    rendered: bytes,
    *,
    title: str,
    attachments: Sequence[Attachment],
    info: Mapping[str, str],
) -> bytes:
    """Write the exact Info keys and check that every attachment went in unchanged."""
    with pikepdf.open(io.BytesIO(rendered)) as pdf:
        pdf.docinfo[pikepdf.Name("/Title")] = pikepdf.String(title)
        for key, value in info.items():
            if not key or not key.isascii() or not key.isalnum():
                raise ValueError(f"Invalid document information key {key!r}.")
            pdf.docinfo[pikepdf.Name("/" + key)] = pikepdf.String(value)
        _dedupe_associated_files(pdf)
        embedded = pdf.attachments
        for attachment in attachments:
            spec = embedded.get(attachment.name)
            if spec is None or spec.get_file().read_bytes() != attachment.data:
                # WeasyPrint logs attachment failures instead of raising; a report without its
                # data must not be produced.
                raise RuntimeError(f"The attachment {attachment.name!r} was not embedded intact.")
        out = io.BytesIO()
        pdf.save(out)
    return out.getvalue()


def _dedupe_associated_files(pdf: pikepdf.Pdf) -> None:
    """WeasyPrint lists each embedded file twice in the catalog's `/AF` (once from the name
    tree, once from the file specifications); keep each file specification once."""
    associated = pdf.Root.get("/AF")
    if not isinstance(associated, pikepdf.Array):
        return
    seen: set[tuple[int, int]] = set()
    unique = []
    for spec in associated:
        if spec.objgen in seen:
            continue
        seen.add(spec.objgen)
        unique.append(spec)
    pdf.Root.AF = pdf.make_indirect(pikepdf.Array(unique))
