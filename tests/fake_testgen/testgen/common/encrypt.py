"""TestGen's EncryptText/DecryptText: connection passwords stored encrypted with the install's keys
(TG_DECRYPT_SALT, TG_DECRYPT_PASSWORD), so that data moved without its keys cannot be read."""

from __future__ import annotations

import base64
import hashlib
import os

from testgen.__main__ import setting


def _stream(length: int) -> bytes:
    key = (setting("TG_DECRYPT_SALT", "") + setting("TG_DECRYPT_PASSWORD", "")).encode()
    if not key:
        raise RuntimeError("TG_DECRYPT_SALT and TG_DECRYPT_PASSWORD are not set")
    return hashlib.shake_256(key).digest(length)


def EncryptText(text: str) -> str:
    if os.environ.get("FAKE_TESTGEN_FAIL") == "encrypt":
        raise RuntimeError("fake failure in EncryptText")
    data = text.encode()
    return base64.b64encode(bytes(a ^ b for a, b in zip(data, _stream(len(data))))).decode()


def DecryptText(encrypted: bytes | str) -> str:
    data = base64.b64decode(encrypted)
    return bytes(a ^ b for a, b in zip(data, _stream(len(data)))).decode()
