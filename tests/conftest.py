"""The suite runs on a test bed of its own (MMDEPLOY_TEST_BED, default 30: network
10.213.37.0/24), never on the operator's (`inv up` uses bed 0 unless MMDEPLOY_BED says
otherwise). Set before anything imports mmdeploy.testbed, which reads it once."""

import os

os.environ["MMDEPLOY_BED"] = os.environ.get("MMDEPLOY_TEST_BED", "30")
