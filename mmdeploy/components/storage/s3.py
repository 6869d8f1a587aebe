"""A small S3 client with AWS Signature Version 4, from the standard library only.

It serves twice: `verify` imports it on the control machine to talk to the storage layer,
and the storage components install this very file on a storage host
(/usr/local/lib/mmdeploy/s3.py), where `python3 s3.py bucket ...` creates Mattermost's
bucket through the S3 API with the credentials read from the server's own config file, so
no secret travels on a command line. Path-style requests (what minio-go, Mattermost's
client, uses for a non-AWS endpoint) over plain HTTP on the private network.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import sys
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class S3Error(Exception):
    """The server could not be reached or answered something unexpected."""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    region: str,
    access_key: str,
    secret_key: str,
    payload_sha256: str = EMPTY_SHA256,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers that sign one request with SigV4 (service s3). `path` is the raw
    object path (/bucket/key); it is URI-encoded here exactly as it goes on the wire."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/-_.~"),
            canonical_query,
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


class Client:
    """Path-style S3 requests to http://address:port. Without credentials a request is
    anonymous (which the storage layer must refuse)."""

    def __init__(
        self,
        address: str,
        port: int,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 10,
    ):
        self.address, self.port, self.region = address, port, region
        self.access_key, self.secret_key, self.timeout = access_key, secret_key, timeout

    @property
    def host(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def request(
        self, method: str, bucket: str = "", key: str = "", body: bytes = b"", query: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        path = "/" + bucket + ("/" + key if key else "")
        query = query or {}
        headers = {}
        if self.access_key and self.secret_key:
            headers = signed_headers(
                method,
                self.host,
                path,
                query,
                self.region,
                self.access_key,
                self.secret_key,
                hashlib.sha256(body).hexdigest(),
            )
        url = quote(path, safe="/-_.~")
        if query:
            url += "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        try:
            conn.request(method, url, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as e:
            raise S3Error(f"{method} http://{self.host}{path}: {e}") from None
        finally:
            conn.close()

    def bucket_exists(self, bucket: str) -> bool:
        status, body = self.request("HEAD", bucket)
        if status == 200:
            return True
        if status == 404:
            return False
        raise S3Error(f"HEAD bucket {bucket} on {self.host}: HTTP {status} {body[:200]!r}")

    def create_bucket(self, bucket: str) -> None:
        """Create `bucket` if it is missing; a concurrent creator or an existing bucket of
        ours is fine."""
        if self.bucket_exists(bucket):
            return
        body = b""
        if self.region != "us-east-1":  # S3's rule: any other region is named in the body
            body = (
                f'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        status, answer = self.request("PUT", bucket, body=body)
        if status == 200 or (status == 409 and b"BucketAlreadyOwnedByYou" in answer):
            return
        raise S3Error(f"PUT bucket {bucket} on {self.host}: HTTP {status} {answer[:300]!r}")


def read_credentials(path: str, identity: str | None = None) -> tuple[str, str]:
    """(access key, secret key) from a SeaweedFS S3 config (JSON: the first credential of
    the identity so named, else of the first identity) or a MinIO environment file
    (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)."""
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        identities = json.loads(text)["identities"]
        chosen = [i for i in identities if i["name"] == identity] if identity else identities
        credential = chosen[0]["credentials"][0]
        return credential["accessKey"], credential["secretKey"]
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip().strip('"')
    return values["MINIO_ROOT_USER"], values["MINIO_ROOT_PASSWORD"]


USAGE = "usage: s3.py bucket (check|create) ADDRESS PORT REGION BUCKET CREDENTIALS_FILE [IDENTITY]"


def main(argv: list[str]) -> int:
    """`bucket check` exits 0 when the bucket exists, 1 when it does not; `bucket create`
    creates it when missing. 2: bad usage or an error (printed). IDENTITY: whose
    credentials of a SeaweedFS config to use (default: the first)."""
    if len(argv) not in (7, 8) or argv[0] != "bucket" or argv[1] not in ("check", "create"):
        print(USAGE, file=sys.stderr)
        return 2
    _, action, address, port, region, bucket, credentials, *identity = argv
    try:
        access_key, secret_key = read_credentials(credentials, identity[0] if identity else None)
        client = Client(address, int(port), region, access_key, secret_key)
        if action == "check":
            return 0 if client.bucket_exists(bucket) else 1
        client.create_bucket(bucket)
        print(f"bucket {bucket} is there")
        return 0
    except (OSError, ValueError, KeyError, IndexError, S3Error) as e:
        print(f"s3.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
