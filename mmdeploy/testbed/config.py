"""Which bed this process drives: MMDEPLOY_BED=N (0..60) selects a bed of its own network
10.213.(7+N).0/24, container names and inventory file, so that independent beds (the
operator's `inv up`, the test suite's, a benchmark's) cannot disturb each other."""

from __future__ import annotations

import os
from typing import Callable

BED = int(os.environ.get("MMDEPLOY_BED", "0"))
if not 0 <= BED <= 60:
    raise ValueError(f"MMDEPLOY_BED: expected 0..60, got {BED}")
NETWORK = "mmdeploy-bed" if BED == 0 else f"mmdeploy-bed{BED}"
SUBNET = f"10.213.{7 + BED}.0/24"
GATEWAY = f"10.213.{7 + BED}.1"
LABEL = "mmdeploy.testbed"  # its value is the bed's network name
ROLES_LABEL = f"{LABEL}.roles"
OWNER_LABEL = f"{LABEL}.owner"  # who created the container: up | testbed | a test module
LAYOUT_LABEL = f"{LABEL}.layout"

Log = Callable[[str], None]


class TestbedError(Exception):
    """A test-bed step failed; the message says what failed and how to fix it."""

    __test__ = False  # not a pytest test class despite the name


def container_name(host: str) -> str:
    return f"{NETWORK}-{host}"
