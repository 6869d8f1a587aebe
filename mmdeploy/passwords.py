"""Does a database account's stored verifier match a password? Checked on the control
machine, from the verifier the server stores (read as a fact, whose output is never
logged), so that a password changed in the secrets is applied to the account, and an
unchanged one is left alone, without a password on any command line or a login attempt.

- PostgreSQL: SCRAM-SHA-256 (RFC 5802/7677, with SASLprep as PostgreSQL applies it) and
  the older md5 verifiers.
- MariaDB / MySQL: mysql_native_password (SHA1(SHA1(password))), and Oracle MySQL 8's
  caching_sha2_password ($A$<rounds/1000>$<20-byte salt><SHA-256 crypt digest>).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import stringprep
import unicodedata


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL derives a SCRAM verifier from (pg_saslprep): ASCII as is;
    otherwise non-ASCII spaces mapped to a space, "mapped to nothing" characters removed,
    NFKC; a password with prohibited characters or bad bidirectional text is used raw."""
    if password.isascii():
        return password.encode()
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(c) for c in normalized for check in prohibited):
        return password.encode()
    if any(stringprep.in_table_d1(c) for c in normalized):
        if any(stringprep.in_table_d2(c) for c in normalized) or not (
            stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1])
        ):
            return password.encode()
    return normalized.encode()


def scram_verifier(password: str, salt: bytes, iterations: int) -> str:
    """SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as PostgreSQL stores it."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def postgres_matches(verifier: str, user: str, password: str) -> bool:
    """Whether PostgreSQL's rolpassword `verifier` is that of `password`."""
    if verifier.startswith("SCRAM-SHA-256$"):
        try:
            head, _keys = verifier[len("SCRAM-SHA-256$") :].split("$", 1)
            iterations, salt = head.split(":", 1)
            expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
        except ValueError:
            return False
        return hmac.compare_digest(expected, verifier)
    if verifier.startswith("md5"):
        return hmac.compare_digest(verifier, "md5" + hashlib.md5((password + user).encode()).hexdigest())
    return False


def native_hash(password: str) -> str:
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


_CRYPT64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def sha256_crypt(password: bytes, salt: bytes, rounds: int = 5000) -> str:
    """The digest part of SHA-256 crypt (Drepper's algorithm, `$5$`): 43 characters.
    glibc limits the salt to 16 bytes; MySQL's caching_sha2_password uses 20."""
    h = hashlib.sha256
    b = h(password + salt + password).digest()
    a = h(password + salt)
    n = len(password)
    while n > 32:
        a.update(b)
        n -= 32
    a.update(b[:n])
    n = len(password)
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    digest_a = a.digest()
    dp = h(password * len(password)).digest()
    p = (dp * (len(password) // 32 + 1))[: len(password)]
    ds = h(salt * (16 + digest_a[0])).digest()
    s = (ds * (len(salt) // 32 + 1))[: len(salt)]
    c = digest_a
    for i in range(rounds):
        ctx = h(p if i & 1 else c)
        if i % 3:
            ctx.update(s)
        if i % 7:
            ctx.update(p)
        ctx.update(c if i & 1 else p)
        c = ctx.digest()
    order = [
        (0, 10, 20),
        (21, 1, 11),
        (12, 22, 2),
        (3, 13, 23),
        (24, 4, 14),
        (15, 25, 5),
        (6, 16, 26),
        (27, 7, 17),
        (18, 28, 8),
        (9, 19, 29),
    ]
    out = []

    def emit(b2: int, b1: int, b0: int, count: int) -> None:
        w = (b2 << 16) | (b1 << 8) | b0
        for _ in range(count):
            out.append(_CRYPT64[w & 0x3F])
            w >>= 6

    for i, j, k in order:
        emit(c[i], c[j], c[k], 4)
    emit(0, c[31], c[30], 3)
    return "".join(out)


def mysql_matches(plugin: str, stored: str, password: str) -> bool:
    """Whether a MySQL-family account's (plugin, authentication_string) is `password`."""
    if plugin == "mysql_native_password":
        return hmac.compare_digest(stored.upper(), native_hash(password))
    if plugin == "caching_sha2_password" and stored.startswith("$A$") and len(stored) == 70:
        rounds = int(stored[3:6], 16) * 1000 if stored[3:6].isalnum() else 0
        salt, digest = stored[7:27], stored[27:]
        return rounds > 0 and hmac.compare_digest(
            sha256_crypt(password.encode(), salt.encode("latin-1"), rounds), digest
        )
    return False
