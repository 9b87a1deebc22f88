"""The seal format on its own: every file format, and each way a sealed file can be edited."""

import base64
import io
import json

import pikepdf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audits.reports import seal_format
from audits.reports.common import canonical_json

KEY = Ed25519PrivateKey.generate()


def statement(file_format: str, **fields) -> dict:
    """A complete seal statement, as `audits.reports.services` writes one."""
    return {
        "report": {"id": 7, "kind": "audit", "format": file_format, "file_name": "r"},
        "project": {"slug": "p", "name": "P"},
        "covers": {"gate": None, "since": None, "until": None},
        "chain": {"key": "project:p", "length": 3, "head_hash": "a" * 64, "checkpoint": None},
        "generated_at": "2026-12-01T10:00:00.000000+00:00",
        "requested_by": "Ada",
        "content_sha256": "b" * 64,
        "missing_facts": [],
        **fields,
    }


def _sealed_text(file_format: str, body: bytes) -> bytes:
    body = seal_format.text_body(body)
    seal = seal_format.sign(KEY, statement(file_format, body_sha256=seal_format.sha256(body)))
    return body + seal_format.seal_line(file_format, seal)


def _verify(data: bytes, keys=None) -> None:
    seal_format.check(seal_format.open_sealed(data), keys)


@pytest.mark.parametrize(
    ("file_format", "body"),
    [
        ("xml", b'<?xml version="1.0"?>\n<card>\xc3\xa9</card>'),
        ("csv", b"sequence,actor\r\n1,'=cmd\r\n"),
        ("jsonl", b'{"kind":"audit"}\n{"sequence":1}\n'),
    ],
)
def test_text_reports_verify_and_any_edit_is_named(file_format, body):
    sealed = _sealed_text(file_format, body)
    _verify(sealed)
    _verify(sealed, [KEY.public_key()])

    edited = sealed.replace(b"1", b"2", 1)
    with pytest.raises(seal_format.SealError, match="the file was changed after sealing"):
        _verify(edited)

    with pytest.raises(seal_format.SealError, match="no report seal found"):
        _verify(seal_format.text_body(body))

    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(seal_format.SealError, match="not with the expected key"):
        _verify(sealed, [other])


def test_an_edited_seal_does_not_verify():
    body = b"<card/>\n"
    seal = seal_format.sign(KEY, statement("xml", body_sha256=seal_format.sha256(body)))
    forged = {**seal, "project": {"slug": "other", "name": "Other"}}
    data = body + seal_format.seal_line("xml", forged)
    with pytest.raises(seal_format.SealError, match="signature does not verify"):
        _verify(data)


def test_a_damaged_seal_is_named():
    data = b"<card/>\n<!-- llm-governance-report-seal bm90IGpzb24= -->\n"
    with pytest.raises(seal_format.SealError, match="damaged"):
        _verify(data)


def test_json_reports_seal_their_canonical_content():
    content = {"kind": "hti1", "attributes": [{"id": "B1.i", "value": "Ünïcode <b>"}]}
    seal = seal_format.sign(
        KEY,
        statement(
            "json",
            content_sha256=seal_format.sha256(canonical_json(content)),
            body_sha256=seal_format.sha256(seal_format.json_body(content)),
        ),
    )
    data = seal_format.sealed_json(content, seal)
    _verify(data)
    document = json.loads(data)
    document["attributes"][0]["value"] = "changed"
    with pytest.raises(seal_format.SealError, match="the JSON report was changed"):
        _verify(json.dumps(document).encode())


def _pdf_with_attachment(content: bytes) -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.attachments["report.json"] = pikepdf.AttachedFileSpec(pdf, content)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _sealed_pdf(content: bytes) -> bytes:
    body = seal_format.with_pdf_slot(_pdf_with_attachment(content))
    seal = seal_format.sign(
        KEY,
        statement(
            "pdf",
            content_file="report.json",
            content_sha256=seal_format.sha256(content),
            body_sha256=seal_format.sha256(body),
        ),
    )
    return seal_format.fill_pdf_slot(body, seal)


def test_a_sealed_pdf_stays_a_readable_pdf_with_its_seal_in_the_information_dictionary():
    sealed = _sealed_pdf(b'{"kind":"dossier"}')
    _verify(sealed)
    with pikepdf.open(io.BytesIO(sealed)) as document:
        stored = str(document.docinfo[seal_format.PDF_KEY]).strip()
    assert json.loads(base64.b64decode(stored))["report"]["id"] == 7


def test_an_edited_pdf_attachment_is_named_before_the_bytes():
    content = b'{"kind":"dossier","verdict":"pass"}'
    sealed = _sealed_pdf(content)
    with pikepdf.open(io.BytesIO(sealed)) as document:
        document.attachments["report.json"] = pikepdf.AttachedFileSpec(
            document, content.replace(b"pass", b"fail")
        )
        out = io.BytesIO()
        document.save(out)
    with pytest.raises(seal_format.SealError, match=r"report\.json was changed after sealing"):
        _verify(out.getvalue())


def test_edited_pdf_bytes_are_named():
    sealed = _sealed_pdf(b'{"kind":"dossier"}')
    edited = sealed.replace(b"/MediaBox", b"/MediaBox ", 1)
    with pytest.raises(seal_format.SealError, match="the PDF's bytes were changed"):
        _verify(edited)


def _resign(seal: dict, key=KEY, **changes) -> dict:
    unsigned = {k: v for k, v in {**seal, **changes}.items() if k != "signature"}
    signature = key.sign(seal_format.canonical(unsigned))
    return {**unsigned, "signature": base64.b64encode(signature).decode()}


def test_a_seal_that_names_another_key_than_it_carries_is_forged():
    body = b"<card/>\n"
    forger = Ed25519PrivateKey.generate()
    genuine = seal_format.sign(KEY, statement("xml", body_sha256=seal_format.sha256(body)))
    forged = _resign(
        seal_format.sign(forger, statement("xml", body_sha256=seal_format.sha256(body))),
        key=forger,
        key_id=genuine["key_id"],
    )
    with pytest.raises(seal_format.SealError, match="a forged seal"):
        _verify(body + seal_format.seal_line("xml", forged))


def test_a_seal_moved_to_a_file_of_another_format_is_named():
    body = b"a,b\r\n"
    seal = seal_format.sign(KEY, statement("csv", body_sha256=seal_format.sha256(body)))
    with pytest.raises(seal_format.SealError, match="moved from another file"):
        _verify(body + seal_format.seal_line("xml", seal))


@pytest.mark.parametrize("suffix", [b"\n", b"\r\n", b" "])
def test_nothing_may_follow_the_seal_line(suffix):
    sealed = _sealed_text("jsonl", b'{"a":1}\n')
    with pytest.raises(seal_format.SealError):
        _verify(sealed + suffix)
    with pytest.raises(seal_format.SealError):
        _verify(sealed[:-1])


@pytest.mark.parametrize(
    "hostile",
    [
        {"content_file": ["a"]},
        {"report": "not an object"},
        {"missing_facts": [1, 2]},
        {"chain": {"checkpoint": "x"}},
        {"version": "1"},
    ],
)
def test_a_self_signed_seal_of_the_wrong_shape_is_named_not_a_crash(hostile):
    body = b"<card/>\n"
    seal = _resign(
        seal_format.sign(KEY, statement("xml", body_sha256=seal_format.sha256(body))), **hostile
    )
    with pytest.raises(seal_format.SealError, match="damaged"):
        _verify(body + seal_format.seal_line("xml", seal))


def test_json_with_a_key_twice_or_nan_is_refused():
    content = {"kind": "hti1", "regulation": "45 CFR"}
    seal = seal_format.sign(
        KEY,
        statement(
            "json",
            content_sha256=seal_format.sha256(canonical_json(content)),
            body_sha256=seal_format.sha256(seal_format.json_body(content)),
        ),
    )
    data = seal_format.sealed_json(content, seal)
    twice = data.replace(b'{\n  "kind"', b'{\n  "regulation": "FORGED",\n  "kind"', 1)
    with pytest.raises(seal_format.SealError, match="appears twice"):
        _verify(twice)
    with pytest.raises(seal_format.SealError, match="not a JSON number"):
        _verify(data.replace(b'"hti1"', b"NaN", 1))
    with pytest.raises(seal_format.SealError):
        _verify(b"[" * 100_000)
