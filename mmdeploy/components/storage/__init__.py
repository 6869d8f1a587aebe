"""S3 file storage for Mattermost's files, on the hosts with the `storage` role.

Two servers, chosen by `storage.server`:
- seaweedfs (default): SeaweedFS, Apache-2.0 and maintained, with replication between
  volume servers (seaweedfs.py), one component per SeaweedFS server.
- minio: MinIO's community edition from its last official binaries by URL + sha256
  (minio.py). It has shipped source only since late 2025 and is unmaintained since early
  2026; it is offered for sites that already run it.

Shared (common.py): the `storage` settings section, the S3 credentials Mattermost uses
(secrets storage_access_key / storage_secret_key), the layout rules refused at
validation, and the bucket the deploy creates through the S3 API (s3.py, which verify
also uses). Clients reach the layer through the internal balancer:
balancer.endpoint(inventory, "storage").
"""

from .minio import COMPONENTS as _MINIO
from .seaweedfs import COMPONENTS as _SEAWEEDFS

COMPONENTS = [*_SEAWEEDFS, *_MINIO]
