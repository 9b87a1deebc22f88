"""The PDF core of printable reports: PDF/A-3b, associated files, exact Info keys, offline."""

import io
import subprocess
from pathlib import Path

import pikepdf
import pytest
from django.template import Context, Template

from audits.reports.pdf import FONTS_DIR, Attachment, OfflineFetcher, render_pdf

HOSTILE_NAME = "<img src=x onerror=alert(1)> & <svg onload=alert(2)>"

# Every way a page can ask for a resource: an image, a stylesheet link, @import, url() in CSS
# (background and @font-face), for http, https, ftp and a local file outside the fonts.
REMOTE_HTML = """<!doctype html><html><head>
<link rel="stylesheet" href="https://cdn.example.com/style.css">
<link rel="stylesheet" href="file:///etc/passwd">
<link rel="attachment" href="http://example.com/leak.bin">
<style>
@import url("http://example.com/import.css");
@import "file:///etc/passwd";
@font-face { font-family: Remote; src: url("https://fonts.example.com/f.woff2"); }
body { background: url("ftp://example.com/bg.png"); font-family: Remote; }
</style></head><body>
<p>Still rendered.</p>
<img src="http://example.com/a.png"><img src="https://example.com/b.png">
<img src="file:///etc/passwd"><img src="../../../../etc/passwd">
<div style="background-image: url('http://example.com/c.png')">x</div>
<img src="data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='4' height='4'/>">
</body></html>"""


def _report_html(name: str, body: str = "") -> str:
    """A report extending the print base: `name` is user text (escaped), `body` trusted markup."""
    template = Template(
        '{% extends "reports/base_print.html" %}{% block title %}Dossier of {{ name }}'
        "{% endblock %}{% block content %}<p>{{ name }}</p>{{ body|safe }}{% endblock %}"
    )
    return template.render(Context({"name": name, "body": body}))


def test_it_renders_pdf_a_3b_with_the_title_in_info_and_xmp():
    body = render_pdf(_report_html("Sepsis triage"), title="Dossier of Sepsis triage")

    with pikepdf.open(io.BytesIO(body)) as pdf:
        assert str(pdf.docinfo["/Title"]) == "Dossier of Sepsis triage"
        with pdf.open_metadata() as xmp:
            assert xmp["pdfaid:part"] == "3"
            assert xmp["pdfaid:conformance"] == "B"
            assert xmp["dc:title"] == "Dossier of Sepsis triage"
        assert pdf.Root.OutputIntents[0].S == "/GTS_PDFA1"


def test_it_embeds_attachments_as_associated_files_byte_for_byte():
    data = '{"name":"Ärztliche Übersicht","n":1}\n'.encode() + bytes(range(256))
    xml = b"<?xml version='1.0'?><card/>"
    body = render_pdf(
        _report_html("x"),
        title="t",
        attachments=[
            Attachment("dossier.json", data, "application/json", "The dossier's content"),
            Attachment("card.xml", xml, "application/xml", "The card", relationship="Source"),
        ],
    )

    with pikepdf.open(io.BytesIO(body)) as pdf:
        assert pdf.attachments["dossier.json"].get_file().read_bytes() == data
        assert pdf.attachments["dossier.json"].get_file().mime_type == "application/json"
        assert pdf.attachments["card.xml"].get_file().read_bytes() == xml
        relationships = {str(spec.UF): str(spec.AFRelationship) for spec in pdf.Root.AF}
        assert relationships == {"dossier.json": "/Data", "card.xml": "/Source"}


def test_it_writes_custom_info_keys_with_their_exact_spelling():
    body = render_pdf(
        _report_html("x"),
        title="CHAI card",
        info={"chaiMcXml": "<AppliedModelCard/>", "chaiMcSoftwareId": "llm-gov 1.0"},
    )

    with pikepdf.open(io.BytesIO(body)) as pdf:
        keys = set(pdf.docinfo.keys())
        assert {"/chaiMcXml", "/chaiMcSoftwareId"} <= keys
        assert "/chaimcxml" not in keys
        assert str(pdf.docinfo["/chaiMcXml"]) == "<AppliedModelCard/>"
        # The seal is written later into the same dictionary.
        pdf.docinfo["/Seal"] = "x" * 10
        pdf.save(io.BytesIO())


def test_it_refuses_an_info_key_that_is_not_a_plain_name():
    with pytest.raises(ValueError):
        render_pdf(_report_html("x"), title="t", info={"a/b": "c"})


def test_it_renders_offline_refusing_every_remote_or_local_resource(no_network, caplog):
    body = render_pdf(REMOTE_HTML, title="Offline")

    assert no_network == []
    assert body.startswith(b"%PDF-")
    with pikepdf.open(io.BytesIO(body)) as pdf:
        assert len(pdf.pages) == 1
        assert len(pdf.attachments) == 0
    refused = "\n".join(r.getMessage() for r in caplog.records)
    for url in (
        "https://cdn.example.com/style.css",
        "http://example.com/import.css",
        "https://fonts.example.com/f.woff2",
        "ftp://example.com/bg.png",
        "http://example.com/a.png",
        "https://example.com/b.png",
        "file:///etc/passwd",
        "http://example.com/c.png",
    ):
        assert url in refused


def test_the_fetcher_allows_only_data_uris_and_the_vendored_fonts(no_network):
    fetcher = OfflineFetcher()
    assert fetcher("data:text/plain;base64,aGk=").read() == b"hi"
    font = (FONTS_DIR / "DejaVuSans.ttf").as_uri()
    assert fetcher(font).read() == (FONTS_DIR / "DejaVuSans.ttf").read_bytes()
    for url in (
        "http://example.com/",
        "https://example.com/",
        "ftp://example.com/x",
        "file:///etc/passwd",
        (FONTS_DIR / "LICENSE").as_uri(),
        (FONTS_DIR / ".." / "pdf.py").as_uri(),
        "file://example.com" + str(FONTS_DIR / "DejaVuSans.ttf"),
    ):
        with pytest.raises(ValueError):
            fetcher(url)
    assert no_network == []


def test_markup_in_user_text_prints_as_literal_text(tmp_path):
    body = render_pdf(_report_html(HOSTILE_NAME), title=HOSTILE_NAME)
    path = tmp_path / "hostile.pdf"
    path.write_bytes(body)

    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "<img src=x onerror=alert(1)>" in text
    assert "<svg onload=alert(2)>" in text


def test_it_uses_only_the_vendored_fonts(tmp_path):
    path = tmp_path / "fonts.pdf"
    path.write_bytes(
        render_pdf(
            _report_html("x", "<p><b>bold</b> <i>it</i> <code>ab12</code></p>"),
            title="t",
        )
    )

    fonts = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split()[0].split("+")[-1] for line in fonts.splitlines()[2:]}
    # The families are named after the vendored @font-face rules; a machine font that stood in
    # for a missing one would carry its own name (DejaVu-Sans, Liberation...).
    assert names == {"Report-Sans", "Report-Sans-Bold", "Report-Sans-Italic", "Report-Mono"}
    # Every font is embedded (PDF/A): the "emb" column says yes on every line.
    assert all(" yes " in line for line in fonts.splitlines()[2:])


def test_the_vendored_fonts_carry_their_licence():
    licence = (FONTS_DIR / "LICENSE").read_text()
    assert "Bitstream" in licence
    assert sorted(p.name for p in Path(FONTS_DIR).glob("*.ttf")) == [
        "DejaVuSans-Bold.ttf",
        "DejaVuSans-Oblique.ttf",
        "DejaVuSans.ttf",
        "DejaVuSansMono.ttf",
    ]


def test_long_tables_repeat_their_header_and_number_pages(tmp_path):
    rows = "".join(f"<tr><td>{i}</td><td class='hash'>{'ab' * 32}</td></tr>" for i in range(150))
    html = _report_html(
        "Long",
        f"<table><thead><tr><th>Row</th><th>SHA-256</th></tr></thead><tbody>{rows}</tbody></table>",
    )
    path = tmp_path / "long.pdf"
    path.write_bytes(render_pdf(html, title="Long"))

    pages = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout.split("\f")
    pages = [p for p in pages if p.strip()]
    assert len(pages) > 2
    for number, page in enumerate(pages, start=1):
        assert "SHA-256" in page
        assert f"page {number} of {len(pages)}" in page
        assert "Dossier of Long" in page
