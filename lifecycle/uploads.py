"""Uploaded files (evidence, evaluation records): streamed once for name, size and SHA-256."""

import hashlib
import os

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile


def hash_upload(upload: UploadedFile, field: str, limit: int, setting: str) -> tuple[str, int, str]:
    """Stream an upload once: its clean name, size and SHA-256, refusing empty files and files
    over `limit` bytes with a message that names the setting."""
    name = os.path.basename(upload.name or "").strip()
    if not name:
        raise ValidationError({field: "The uploaded file has no name."})

    def too_large(size: int) -> ValidationError:
        message = f"“{name}” is {size:,} bytes; files may be at most {limit:,} bytes ({setting})."
        return ValidationError({field: message})

    if upload.size is not None and upload.size > limit:
        raise too_large(upload.size)
    digest = hashlib.sha256()
    size = 0
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(size)
    if size == 0:
        raise ValidationError({field: f"“{name}” is empty."})
    upload.seek(0)
    return name, size, digest.hexdigest()
