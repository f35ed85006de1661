"""Reading the YAML and JSON files a user hands to the CLI: bounded in size, then
parsed as plain data by ``core/documents.py`` (its docstring lists the rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patchwarden.core.documents import MAX_DOCUMENT_BYTES, parse_document
from patchwarden.core.errors import PayloadTooLarge, ValidationFailed


def load_document(path: Path, *, what: str = "a document") -> dict[str, Any]:
    """The object in a YAML (``.yaml``/``.yml``) or JSON file (any other name)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(
            f"{path} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB; refusing to parse it",
            hint=f"{what} is a small file; check that this is the right one",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    return parse_document(
        text, source=str(path), yaml_syntax=path.suffix in (".yaml", ".yml"), what=what
    )
