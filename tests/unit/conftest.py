import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write_inventory(tmp_path):
    """Write an inventory YAML (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "site.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


SINGLE = """\
pattern: single
ssh:
  user: root
settings:
  domain: chat.example.com
hosts:
  - name: proxy1
    address: 192.0.2.11
    roles: [proxy]
  - name: app1
    address: 192.0.2.12
    private_address: 10.0.0.12
    roles: [app, jobserver, monitoring]
  - name: db1
    address: 192.0.2.13
    roles: [db]
"""
