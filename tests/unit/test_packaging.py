"""The built package: Apache-2.0 metadata and license file, the py.typed marker (the API
is typed) and the --json schema ship in the wheel. Builds it for real with pip."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_license_types_and_schema(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = tmp_path.glob("mmdeploy-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "mmdeploy/py.typed" in names
    assert "mmdeploy/schemas/output.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_import_mmdeploy_is_light_and_every_public_name_resolves():
    """`import mmdeploy` (and so `inv --list`) loads no heavy dependency; the API is
    imported on first use, and every name of __all__ is there."""
    code = (
        "import sys, mmdeploy\n"
        "heavy = sorted(m for m in ('pydantic', 'jinja2', 'paramiko', 'fabric', 'mmdeploy.api') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
        "missing = [n for n in mmdeploy.__all__ if getattr(mmdeploy, n, None) is None]\n"
        "print(','.join(missing))\n"
        "from mmdeploy import deploy, LockHeld\n"
        "print(deploy.__module__, LockHeld.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == ["", "", "mmdeploy.api mmdeploy.locks"]
