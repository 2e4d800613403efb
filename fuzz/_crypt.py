"""The PDF standard security handler (revisions 2-4), enough to write encrypted files.

Pure Python: RC4 and the MD5 key derivations of ISO 32000-1 7.6.3 (algorithms 1, 2, 3, 5).
The user password is always empty so that readers open the files without one; the owner
password is whatever the strategy drew. AES (revision 4, /AESV2) only gets its dictionary
and keys: the attack that uses it needs ciphertext that decrypts to garbage, not to text.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import struct

from fuzz._syntax import HexString, Name

_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) & 0xFF
        state[i], state[j] = state[j], state[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + state[i]) & 0xFF
        state[i], state[j] = state[j], state[i]
        out[n] = byte ^ state[(state[i] + state[j]) & 0xFF]
    return bytes(out)


def _padded(password: bytes) -> bytes:
    return (password + _PAD)[:32]


@dataclasses.dataclass(frozen=True)
class StandardSecurity:
    """Keys and /Encrypt dictionary for one document.

    revision: 2 (RC4 40-bit), 3 (RC4 128-bit) or 4 (AESV2 crypt filters, 128-bit).
    """

    revision: int
    owner_password: bytes
    document_id: bytes
    permissions: int = -4  # all permissions; bits 1-2 must be 0, high bits 1

    @property
    def key_length(self) -> int:
        return 5 if self.revision == 2 else 16

    def _rounds(self, digest: bytes) -> bytes:
        # Revision 3+ re-hashes the first key_length bytes 50 times (algorithms 2 and 3).
        if self.revision >= 3:
            for _ in range(50):
                digest = hashlib.md5(digest[: self.key_length]).digest()
        return digest[: self.key_length]

    def _rc4_rounds(self, key: bytes, data: bytes) -> bytes:
        data = rc4(key, data)
        if self.revision >= 3:
            for i in range(1, 20):
                data = rc4(bytes(b ^ i for b in key), data)
        return data

    @functools.cached_property  # each costs up to 20 RC4 passes: compute once
    def owner_entry(self) -> bytes:
        key = self._rounds(hashlib.md5(_padded(self.owner_password or b"")).digest())
        return self._rc4_rounds(key, _padded(b""))

    @functools.cached_property
    def file_key(self) -> bytes:
        seed = _padded(b"") + self.owner_entry + struct.pack("<i", self.permissions) + self.document_id
        return self._rounds(hashlib.md5(seed).digest())

    @functools.cached_property
    def user_entry(self) -> bytes:
        if self.revision == 2:
            return rc4(self.file_key, _padded(b""))
        digest = hashlib.md5(_padded(b"") + self.document_id).digest()
        return self._rc4_rounds(self.file_key, digest) + bytes(16)

    def object_key(self, num: int, gen: int) -> bytes:
        salt = b"sAlT" if self.revision == 4 else b""
        seed = self.file_key + num.to_bytes(3, "little") + gen.to_bytes(2, "little") + salt
        return hashlib.md5(seed).digest()[: min(self.key_length + 5, 16)]

    def rc4_crypt(self, num: int, gen: int):
        key = self.object_key(num, gen)
        return lambda data: rc4(key, data)

    def dictionary(self) -> dict:
        entries = {"Filter": Name("Standard"), "R": self.revision, "P": self.permissions,
                   "O": HexString(self.owner_entry), "U": HexString(self.user_entry)}
        if self.revision == 2:
            return {**entries, "V": 1}
        if self.revision == 3:
            return {**entries, "V": 2, "Length": 128}
        filt = {"Type": Name("CryptFilter"), "CFM": Name("AESV2"), "AuthEvent": Name("DocOpen"), "Length": 16}
        return {**entries, "V": 4, "Length": 128, "CF": {"StdCF": filt},
                "StmF": Name("StdCF"), "StrF": Name("StdCF")}
