"""The NGINX component: the rendered configuration carries every directive of Mattermost's
recommended proxy setup, and the certificate steps follow tls.mode."""

import re

import pytest

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components.nginx import CERT, KEY, Nginx, render
from mmdeploy.errors import InventoryError
from mmdeploy.ops import Command, File
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.secrets import Redactor, Secrets

from .hostfacts import HostFacts

SITE = """\
pattern: multi
settings:
  domain: chat.example.com
hosts:
  - {name: lb1, address: 192.0.2.1, roles: [proxy]}
  - {name: lb2, address: 192.0.2.2, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [app]}
  - {name: app3, address: 192.0.2.13, private_address: 10.0.0.13, roles: [app]}
  - {name: job1, address: 192.0.2.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, roles: [db]}
  - {name: db3, address: 192.0.2.33, roles: [db]}
  - {name: s1, address: 192.0.2.41, roles: [search, storage, pushproxy]}
  - {name: s2, address: 192.0.2.42, roles: [search, storage, pushproxy]}
"""


@pytest.fixture
def site(write_inventory, tmp_path):
    def load(*overrides):
        inv = inventory.load(write_inventory(SITE), overrides)
        return Context(inv, inv.host("lb1"), Secrets(tmp_path / "s.yml", Redactor()), HostFacts())

    return load


def server_block(conf: str, listen: str) -> str:
    start = conf.index(f"listen {listen}")
    return conf[conf.rindex("server {", 0, start) :]


def test_http_only_redirects_to_https(site):
    conf = render(site())
    http = server_block(conf, "80 default_server")
    http = http[: http.index("\n    }\n")]
    assert "return 301 https://$server_name$request_uri;" in http
    assert "proxy_pass" not in http and "acme-challenge" not in http


def test_https_server_tls_and_headers(site):
    conf = render(site())
    https = server_block(conf, "443 ssl http2 default_server;")
    assert "server_name chat.example.com;" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    (ciphers,) = re.findall(r"ssl_ciphers (\S+);", https)
    assert ciphers.split(":") == [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in https
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in https
    assert "ssl_session_cache shared:SSL:50m;" in https
    assert f"ssl_certificate {CERT};" in https and f"ssl_certificate_key {KEY};" in https
    assert "ssl_stapling" not in https  # a self-signed certificate has no OCSP responder
    assert "client_max_body_size 50M;" in https


def test_websocket_location(site):
    conf = render(site())
    start = conf.index("location ~ /api/v[0-9]+/(users/)?websocket$ {")
    ws = conf[start : conf.index("}", start)]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert 'proxy_set_header Connection "upgrade";' in ws
    assert "proxy_http_version 1.1;" in ws
    assert "proxy_read_timeout 600s;" in ws
    assert "proxy_pass http://backend;" in ws


def upstream_of(conf: str) -> str:
    return conf[conf.index("upstream backend {") : conf.index("}", conf.index("upstream backend {"))]


def test_upstream_of_every_app_server_with_keepalive(site):
    upstream = upstream_of(render(site()))
    # Several app servers: one that fails is left out for a while (passive detection).
    assert re.findall(r"server (\S+) max_fails=2 fail_timeout=10s;", upstream) == [
        "10.0.0.11:8065",
        "10.0.0.12:8065",
        "10.0.0.13:8065",
    ]
    assert "keepalive 32;" in upstream
    assert "ip_hash" not in upstream and "sticky" not in upstream  # Mattermost needs none


def test_several_app_servers_retry_only_what_is_safe(site):
    https = server_block(render(site()), "443 ssl http2 default_server;")
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in https
    assert "proxy_next_upstream_tries 3;" in https
    assert "proxy_connect_timeout 2s;" in https
    # NGINX's default keeps non-idempotent requests (POST, PATCH) from being sent twice.
    assert "non_idempotent" not in https
    # The websocket location inherits the short connect timeout (no 90 s wait on a dead server).
    ws = https[https.index("location ~ /api/v[0-9]+/(users/)?websocket$") :]
    ws = ws[: ws.index("}")]
    assert "proxy_connect_timeout" not in ws


def test_one_app_server_keeps_the_single_pattern_config(write_inventory, tmp_path):
    from tests.unit.conftest import SINGLE

    inv = inventory.load(write_inventory(SINGLE))
    conf = render(Context(inv, inv.host("proxy1"), Secrets(tmp_path / "s.yml", Redactor()), None))
    assert re.findall(r"server (\S+);", upstream_of(conf)) == ["10.0.0.12:8065"]
    assert "proxy_next_upstream" not in conf and "max_fails" not in conf
    assert "proxy_connect_timeout 90s;" in conf


def test_proxy_health_page_needs_no_app_server(site):
    https = server_block(render(site()), "443 ssl http2 default_server;")
    health = https[https.index("location = /mmdeploy-proxy-health {") :]
    health = health[: health.index("}")]
    assert 'return 200 "ok\\n";' in health and "proxy_pass" not in health


def test_static_asset_cache_as_in_mattermost_guide(site):
    conf = render(site())
    assert "proxy_cache_path /var/cache/nginx/mattermost levels=1:2 keys_zone=mattermost_cache:10m" in conf
    root = conf[conf.index("location / {", conf.index("listen 443")) :]
    for line in (
        "proxy_cache mattermost_cache;",
        "proxy_cache_revalidate on;",
        "proxy_cache_min_uses 2;",
        "proxy_cache_use_stale timeout;",
        "proxy_cache_lock on;",
        'proxy_set_header Connection "";',
    ):
        assert line in root


def test_settings_reach_the_config(site):
    conf = render(
        site(
            "nginx.client_max_body_size=200M",
            "nginx.extra=add_header X-Robots-Tag none;",
            "mattermost.port=8000",
            "nginx.status_port=8123",
        )
    )
    assert "client_max_body_size 200M;" in conf
    assert "        add_header X-Robots-Tag none;\n" in server_block(conf, "443 ssl")
    assert "server 10.0.0.11:8000 " in conf
    status = server_block(conf, "127.0.0.1:8123;")
    assert "stub_status;" in status


def test_body_size_must_be_an_nginx_size(write_inventory):
    with pytest.raises(InventoryError, match="nginx.client_max_body_size"):
        inventory.load(write_inventory(SITE), ["nginx.client_max_body_size=bogus"])


def test_acme_serves_the_challenge_and_staples(site):
    conf = render(site("tls.mode=acme"))
    http = server_block(conf, "80 default_server")
    assert "location /.well-known/acme-challenge/ {" in http and "root /var/www/letsencrypt;" in http
    assert "ssl_stapling on;" in conf


def steps_of(ctx):
    return Nginx().steps(ctx)


def test_self_signed_is_generated_on_the_host_once(site):
    steps = steps_of(site())
    (gen,) = [s for s in steps if isinstance(s, Command) and "self-signed" in s.name]
    assert "openssl req -x509" in gen.script and "-days 365" in gen.script and "umask 077" in gen.script
    assert "DNS:chat.example.com" in gen.unless and "-checkend" in gen.unless
    assert gen.notify == ("reload",)
    conf = next(s for s in steps if isinstance(s, File) and s.path == "/etc/nginx/nginx.conf")
    assert conf.validate == "nginx -t -q -c {}" and conf.notify == ("reload",)
    # The certificate exists before the config that names it is validated.
    assert steps.index(gen) < steps.index(conf)


def test_provided_certificate_is_uploaded_and_its_key_kept_secret(site, tmp_path):
    (tmp_path / "c.pem").write_text("CERT\n")
    (tmp_path / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\nsecret\n")
    steps = steps_of(site("tls.mode=provided", f"tls.cert={tmp_path}/c.pem", f"tls.key={tmp_path}/k.pem"))
    key = next(s for s in steps if getattr(s, "path", None) == KEY)
    assert isinstance(key, SecretFile) and key.mode == "0600"
    (probe,) = key.facts()
    assert "base64" not in probe  # the key's content never comes back in the facts
    from mmdeploy.facts import Fact

    change = key.check({probe: Fact(0, "")})
    assert change.diff == "" and "secret" in change.summary


def test_provided_certificate_missing_file_is_bad_input(site, tmp_path):
    # Checked when the inventory is loaded, before any host is contacted.
    with pytest.raises(InventoryError, match="tls.cert: no such file"):
        site("tls.mode=provided", f"tls.cert={tmp_path}/none.pem", f"tls.key={tmp_path}/none.key")


def test_acme_steps(site):
    steps = steps_of(site("tls.mode=acme", "tls.acme_email=ops@example.com"))
    assert any(getattr(s, "wanted", {}).keys() >= {"nginx", "certbot"} for s in steps)
    certbot = steps[-1]
    assert "certbot certonly --non-interactive --agree-tos -m ops@example.com --webroot" in certbot.script
    assert "ln -sfn /etc/letsencrypt/live/chat.example.com/fullchain.pem" in certbot.script
    placeholder = next(s for s in steps if isinstance(s, Command) and "self-signed" in s.name)
    assert placeholder.unless == f"test -e {CERT}"
