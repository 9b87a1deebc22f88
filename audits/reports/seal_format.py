"""The report seal: an Ed25519 signature over what a report says and the exact file it is.

No Django here: `verify_report` and `python -m audits.reports.verify` check a report on a
machine with neither a database nor settings.

A seal is a JSON statement (kind, project, what the report covers, the audit chain head it
was generated at, when and by whom, the SHA-256 of its canonical JSON content and of its file
bytes, the public key) plus the signature of that statement's canonical JSON. It travels
inside the file it seals:

- PDF: the document information entry `/LLMGovernanceReportSeal`. The file is written with a
  placeholder of fixed length there; its bytes with the placeholder are what `body_sha256`
  covers, and the placeholder is then overwritten in place with the seal (same length, so no
  offset of the PDF moves). Verifying puts the placeholder back and hashes again. The same
  trick as the byte range of a PDF signature, without its certificate machinery.
- XML, CSV, JSON Lines: one last line carrying the seal; `body_sha256` covers every byte before
  it.
- JSON: a top-level `report_seal` key; `body_sha256` covers the canonical JSON of the rest.

Where the content travels with the file (the JSON attachment of a PDF, a JSON report), the
verifier also checks it against `content_sha256`, so an edited attachment is named as such.
"""

import base64
import binascii
import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audits.checkpoint_format import encode_public, key_id

SEAL_FORMAT = "llm-governance-report-seal"
SEAL_VERSION = 1
MARK = SEAL_FORMAT  # the word that starts a seal in a text file's last line
PDF_KEY = "/LLMGovernanceReportSeal"
PDF_SLOT = 12_000  # characters reserved for the seal in a PDF (a seal is about 2,000)
_PDF_PLACEHOLDER = b"0" * PDF_SLOT
_PDF_FIELD = re.compile(re.escape(PDF_KEY.encode()) + rb"\s*\(([A-Za-z0-9+/= ]{%d})\)" % PDF_SLOT)
_B64 = r"([A-Za-z0-9+/=]+)"
# The last line of each text format, exactly as `seal_line` writes it.
_TEXT_SEALS = {
    "xml": re.compile(rf"<!-- {MARK} {_B64} -->"),
    "csv": re.compile(rf"# {MARK} {_B64}"),
    "jsonl": re.compile(rf'\{{"{MARK}": "{_B64}"\}}'),
}

TEXT_FORMATS = ("xml", "csv", "jsonl")


class SealError(Exception):
    """What is wrong with a sealed file, in words an auditor can act on."""


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes every hash and signature is taken over
    (the same rule as `audits.reports.common.canonical_json`)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(key: Ed25519PublicKey) -> str:
    """The full SHA-256 fingerprint of a public key, as the key page publishes it."""
    return fingerprint_of(encode_public(key))


def fingerprint_of(public_key: str) -> str:
    """The fingerprint of a public key as a seal carries it (base64 of the raw bytes)."""
    try:
        return "SHA256:" + sha256(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError):
        return "(unreadable key)"


# --- Making a seal ------------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, statement: dict[str, Any]) -> dict[str, Any]:
    """The seal: the statement with its key and the signature over its canonical JSON."""
    public = key.public_key()
    unsigned = {
        **statement,
        "format": SEAL_FORMAT,
        "version": SEAL_VERSION,
        "key_id": key_id(public),
        "public_key": encode_public(public),
    }
    signature = key.sign(canonical(unsigned))
    return {**unsigned, "signature": base64.b64encode(signature).decode()}


def _encoded(seal: dict[str, Any]) -> str:
    return base64.b64encode(canonical(seal)).decode()


def text_body(body: bytes) -> bytes:
    """A text report's body as it is sealed: ending with a line end."""
    return body if body.endswith(b"\n") else body + b"\n"


def seal_line(file_format: str, seal: dict[str, Any]) -> bytes:
    """The last line of a sealed XML, CSV or JSON Lines report."""
    encoded = _encoded(seal)
    if file_format == "xml":
        return f"<!-- {MARK} {encoded} -->\n".encode()
    if file_format == "csv":
        return f"# {MARK} {encoded}\r\n".encode()
    if file_format == "jsonl":
        return (json.dumps({MARK: encoded}) + "\n").encode()
    raise ValueError(f"no text seal for format {file_format!r}")


def json_body(document: dict[str, Any]) -> bytes:
    """What a JSON report's seal covers: the canonical JSON of everything but the seal."""
    return canonical({k: v for k, v in document.items() if k != "report_seal"})


def sealed_json(document: dict[str, Any], seal: dict[str, Any]) -> bytes:
    return (
        json.dumps({**document, "report_seal": seal}, indent=2, ensure_ascii=False) + "\n"
    ).encode()


def with_pdf_slot(pdf: bytes) -> bytes:
    """The PDF with the placeholder entry added to its information dictionary; what a PDF
    report's `body_sha256` covers."""
    import pikepdf  # imported here: the text formats do not need it

    with pikepdf.open(io.BytesIO(pdf)) as document:
        document.docinfo[PDF_KEY] = pikepdf.String(_PDF_PLACEHOLDER.decode())
        out = io.BytesIO()
        # No object streams: the information dictionary must stay a plain object whose bytes
        # can be found and overwritten in place.
        document.save(
            out,
            object_stream_mode=pikepdf.ObjectStreamMode.disable,
            deterministic_id=True,
        )
    data = out.getvalue()
    if len(_PDF_FIELD.findall(data)) != 1:
        raise SealError("the PDF's seal placeholder could not be placed exactly once")
    return data


def fill_pdf_slot(pdf_with_slot: bytes, seal: dict[str, Any]) -> bytes:
    encoded = _encoded(seal).encode()
    if len(encoded) > PDF_SLOT:
        raise SealError(f"the seal is {len(encoded)} characters; a PDF has room for {PDF_SLOT}")
    match = _PDF_FIELD.search(pdf_with_slot)
    assert match is not None
    filled = encoded.ljust(PDF_SLOT, b" ")
    return pdf_with_slot[: match.start(1)] + filled + pdf_with_slot[match.end(1) :]


# --- Reading and checking a seal -------------------------------------------------------------


@dataclass
class Opened:
    """A sealed file taken apart: its seal, the bytes the seal's body hash covers and, where
    the file carries it, its content (name, bytes)."""

    file_format: str
    seal: dict[str, Any]
    body: bytes
    content: tuple[str, bytes] | None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"the key {twice[0]!r} appears twice")
    return dict(pairs)


def strict_json(data: str | bytes) -> Any:
    """JSON as the seal and the reports write it: no NaN or infinity, no key twice (a reader
    keeping the first of two keys would see another document than the one sealed)."""
    try:
        return json.loads(data, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("nested too deeply") from None


# The fields of a seal and their JSON types; anything else is a damaged or forged seal.
_SEAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "version": int,
    "key_id": str,
    "public_key": str,
    "signature": str,
    "report": dict,
    "project": dict,
    "covers": dict,
    "chain": dict,
    "generated_at": str,
    "requested_by": str,
    "content_sha256": str,
    "body_sha256": str,
    "missing_facts": list,
}
_OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "content_file": (str, type(None)),
    "installation": str,
}


def _shape_problem(seal: dict[str, Any]) -> str | None:
    for name, kind in _SEAL_FIELDS.items():
        if not isinstance(seal.get(name), kind):
            return f"its {name} is missing or not a {getattr(kind, '__name__', kind)}"
    for name, kind in _OPTIONAL_FIELDS.items():
        if name in seal and not isinstance(seal[name], kind):
            return f"its {name} has the wrong type"
    if not all(isinstance(item, str) for item in seal["missing_facts"]):
        return "its missing_facts are not all text"
    checkpoint = seal["chain"].get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, dict):
        return "its chain checkpoint is not an object"
    return None


def _checked(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("format") != SEAL_FORMAT:
        raise SealError(f"the seal in {where} is not a {SEAL_FORMAT}")
    problem = _shape_problem(value)
    if problem:
        raise SealError(f"the seal in {where} is damaged: {problem}")
    return value


def _decode(encoded: str | bytes, where: str) -> dict[str, Any]:
    try:
        value = strict_json(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SealError(f"the seal in {where} is damaged ({exc})") from None
    return _checked(value, where)


def open_sealed(data: bytes) -> Opened:
    """Find the seal in a report file; SealError when there is none or it is unreadable."""
    if data.startswith(b"%PDF-"):
        return _open_pdf(data)
    stripped = data.rstrip(b"\r\n")
    cut = stripped.rfind(b"\n") + 1
    last = stripped[cut:].decode("utf-8", errors="replace")
    found = next(
        (
            (name, match)
            for name, pattern in _TEXT_SEALS.items()
            if (match := pattern.fullmatch(last))
        ),
        None,
    )
    if found is None:
        document = _json_object(data)
        if document is not None:
            return _open_json(document)
        raise SealError(
            "no report seal found: this is not a sealed report, or its seal line was removed"
        )
    file_format, match = found
    seal = _decode(match.group(1), "the last line")
    if data[cut:] != seal_line(file_format, seal):
        raise SealError(
            "the seal line was changed, or something was added after it: the file is not the "
            "one sealed"
        )
    return Opened(file_format, seal, data[:cut], None)


def _json_object(data: bytes) -> dict[str, Any] | None:
    """The file as one JSON object, or None when it is not one (a JSON Lines file is not)."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        document = strict_json(data)
    except ValueError as exc:
        if "twice" in str(exc) or "JSON number" in str(exc) or "deeply" in str(exc):
            raise SealError(f"the JSON report is not one the product writes: {exc}") from None
        return None
    return document if isinstance(document, dict) else None


def _open_json(document: dict[str, Any]) -> Opened:
    if "report_seal" not in document:
        raise SealError("no report seal found: the JSON has no report_seal")
    seal = _checked(document["report_seal"], "report_seal")
    body = json_body(document)
    return Opened("json", seal, body, ("the JSON report", body))


def _open_pdf(data: bytes) -> Opened:
    matches = list(_PDF_FIELD.finditer(data))
    if not matches:
        raise SealError(f"no report seal found: the PDF has no {PDF_KEY} entry")
    if len(matches) > 1:
        raise SealError(f"the PDF has {len(matches)} {PDF_KEY} entries; a sealed report has one")
    match = matches[0]
    where = f"the PDF's {PDF_KEY} entry"
    seal = _decode(match.group(1).rstrip(b" "), where)
    if match.group(1) != _encoded(seal).encode().ljust(PDF_SLOT, b" "):
        raise SealError(f"{where} was rewritten: it is not the seal as it was written")
    body = data[: match.start(1)] + _PDF_PLACEHOLDER + data[match.end(1) :]
    return Opened("pdf", seal, body, _pdf_content(data, seal))


def _pdf_content(data: bytes, seal: dict[str, Any]) -> tuple[str, bytes] | None:
    name = seal.get("content_file")
    if not name:
        return None
    import pikepdf

    try:
        with pikepdf.open(io.BytesIO(data)) as document:
            attachments = document.attachments
            if name not in attachments:
                raise SealError(f"the embedded JSON {name} is missing from the PDF")
            return name, attachments[name].get_file().read_bytes()
    except pikepdf.PdfError as exc:
        raise SealError(f"the PDF cannot be read ({exc})") from None


def check(opened: Opened, expected_keys: list[Ed25519PublicKey] | None = None) -> None:
    """Raise SealError naming the first problem: the signature, the key, the content, the
    bytes, in that order (an edited attachment also changes the bytes; it is named first)."""
    seal = opened.seal
    try:
        signature = base64.b64decode(seal["signature"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(seal["public_key"]))
    except (KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise SealError(f"the seal is damaged ({exc})") from None
    unsigned = {k: v for k, v in seal.items() if k != "signature"}
    try:
        public.verify(signature, canonical(unsigned))
    except InvalidSignature:
        raise SealError(
            "the seal's signature does not verify: the seal was edited after signing"
        ) from None
    if seal["key_id"] != key_id(public):
        raise SealError(
            f"the seal names key {seal['key_id']} but carries the key {key_id(public)}: a "
            "forged seal"
        )
    sealed_format = seal["report"].get("format")
    if sealed_format != opened.file_format:
        raise SealError(
            f"the seal is the seal of a {sealed_format} report, and this file is "
            f"{opened.file_format}: the seal was moved from another file"
        )
    if expected_keys is not None:
        wanted = {key_id(key) for key in expected_keys}
        if key_id(public) not in wanted:
            raise SealError(
                f"the report was sealed with key {key_id(public)}, not with the expected key "
                f"{', '.join(sorted(wanted))}"
            )
    if opened.content is not None:
        name, content = opened.content
        if sha256(content) != seal.get("content_sha256"):
            raise SealError(f"{name} was changed after sealing: its SHA-256 is not the sealed one")
    if sha256(opened.body) != seal.get("body_sha256"):
        what = "the PDF's bytes were" if opened.file_format == "pdf" else "the file was"
        raise SealError(f"{what} changed after sealing: the SHA-256 is not the sealed one")
