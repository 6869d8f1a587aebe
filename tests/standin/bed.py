"""TEST BED ONLY: the settings a test bed's inventory needs besides its hosts, so that every
later command works on the inventory alone:

- the stand-in Mattermost release as a local file (release.py), and a TEST Enterprise
  license that only the stand-in accepts (the licensed path: cluster, search, replicas);
- for a layout with push proxy hosts, the push proxy stand-in archive (artifacts.py) and
  dummy APNs/FCM credentials in the formats the real proxy loads (the stand-in refuses
  empty ones; Apple and Google would refuse these);
- for a layout with storage hosts, the SeaweedFS release built from the Go module proxy,
  with search hosts OpenSearch from Maven Central and a small heap (artifacts.py);
- time sync from the bed's own gateway (no NTP traffic leaves the bed's network).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mmdeploy import testbed

from . import artifacts, release


def credentials(directory: Path) -> dict:
    """Dummy push credentials, made once with openssl: an APNs token key (.p8: a P-256
    key in PKCS#8 PEM) and a Firebase service-account JSON. -> the `pushproxy` settings."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "AuthKey_TESTBED000.p8"
    if not key.exists():
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    service = directory / "firebase-service-account.json"
    if not service.exists():
        service.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "mmdeploy-testbed",
                    "private_key_id": "0" * 40,
                    "private_key": key.read_text(),
                    "client_email": "push@mmdeploy-testbed.iam.gserviceaccount.com",
                },
                indent=2,
            )
            + "\n"
        )
    for path in (key, service):
        path.chmod(0o600)
    return {
        "apple": [
            {
                "type": "apple_rn",
                "topic": "local.mmdeploy.testbed",
                "auth_key_file": str(key),
                "auth_key_id": "TESTBED000",
                "team_id": "TESTTEAM00",
            }
        ],
        "android": [{"type": "android_rn", "service_file": str(service)}],
    }


def license_path(root: Path, features: str = "all") -> Path:
    """A TEST license for this bed, written once per run (it expires after a year)."""
    name = "testbed" if testbed.BED == 0 else f"testbed{testbed.BED}"
    suffix = "" if features == "all" else "-" + features.replace(",", "-")
    path = root / ".testbed" / f"{name}{suffix}.mattermost-license"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return release.license_file(path, features=features)


def settings(root: Path, roles: set[str], licensed: bool = True) -> dict:
    """The bed inventory's settings for hosts with `roles`."""
    result = release.settings()
    if licensed:
        result["mattermost"]["license_file"] = str(license_path(root))
    if "pushproxy" in roles:
        path, sha = artifacts.build("pushproxy")
        name = "testbed" if testbed.BED == 0 else f"testbed{testbed.BED}"
        result["pushproxy"] = {
            "version": artifacts.PUSHPROXY.version,
            "url": str(path),
            "sha256": sha,
            **credentials(root / ".testbed" / f"{name}-push"),
        }
    if "storage" in roles:
        path, sha = artifacts.build("storage")
        result["storage"] = {"url": str(path), "sha256": sha, "version": artifacts.STORAGE.version}
    result.update(artifacts.bed_settings(roles))
    if roles & {"app", "jobserver"}:
        result["time"] = {"servers": [testbed.GATEWAY]}
    return result
