"""NGINX: the TLS-terminating proxy in front of the Mattermost app servers, on hosts with
the `proxy` role, following Mattermost's recommended proxy configuration.

The whole configuration is one file (/etc/nginx/nginx.conf), validated with `nginx -t -c`
on the candidate before it replaces the live one, and applied by a reload, never a
restart. The certificate comes from `tls.mode`:
- self-signed (default): generated on the proxy host once; the key never leaves it.
- provided: `tls.cert` / `tls.key` on the control machine, uploaded (the key 0600).
- acme: Let's Encrypt through certbot's webroot method, for a public domain that resolves
  to the proxy. A self-signed placeholder lets NGINX start and answer the HTTP-01
  challenge; the live certificate then replaces it by symlink and certbot's renewals
  reload NGINX. Not exercised on the test bed (no public domain there).
"""

from __future__ import annotations

import http.client
import re
import shlex
import socket
import ssl
from pathlib import Path

from typing import Literal

from pydantic import Field

from .. import distros
from ..component import ANYONE, Check, Component, Context, Metrics, Port, Role
from ..errors import InventoryError
from ..grammar import Email, NginxBlock, ReadableFile
from ..inventory import Host
from ..ops import Command, Directory, File, Packages, Service
from ..ops.exporter import env_file, exporter_handlers, exporter_steps
from ..ops.secretfile import SecretFile
from ..settings import Section

CONF = "/etc/nginx/nginx.conf"
CERT = "/etc/nginx/tls/mattermost.crt"
KEY = "/etc/nginx/tls/mattermost.key"
ACME_WEBROOT = "/var/www/letsencrypt"
RELOAD = ("reload",)
# Tested, then a graceful reload: new workers, the old ones finish the requests they hold.
RELOAD_SCRIPT = "nginx -t -q && systemctl reload nginx"
EXPORTER = "prometheus-nginx-exporter"
EXPORTER_PORT = 9113  # the Debian package's default


class TLSSettings(Section):
    mode: Literal["self-signed", "provided", "acme"] = "self-signed"
    cert: ReadableFile | None = None
    key: ReadableFile | None = None
    # acme: the address Let's Encrypt sends expiry notices to (none: registered without).
    acme_email: Email | None = None


class NginxSettings(Section):
    """The NGINX proxy in front of the app servers (components/nginx.py)."""

    # The largest request body, i.e. file upload, as an nginx size.
    client_max_body_size: str = Field(default="50M", pattern=r"^\d+[kKmMgG]?$")
    # Raw directives added to the HTTPS server block, e.g. "add_header X-Robots-Tag none;".
    extra: NginxBlock = Field(default="", json_schema_extra={"multiline": True})
    # Loopback port of nginx's stub_status page, which the nginx exporter reads.
    status_port: int = Field(default=8090, ge=1, le=65535)


class Nginx(Component):
    name = "nginx"
    roles = ("proxy",)
    owns_roles = (
        Role(
            "proxy",
            "NGINX in front of the app servers (TLS, HTTP/2, websockets)",
            {"single": 1, "multi": 2, "cluster": 2},
        ),
    )
    settings = {"nginx": NginxSettings, "tls": TLSSettings}
    metrics = (Metrics("nginx", EXPORTER_PORT),)
    # The site itself: open to everyone (80 only redirects to 443, and answers ACME).
    ports = (Port("http", 80, (ANYONE,)), Port("https", 443, (ANYONE,)))
    after = ("base",)

    def validate(self, settings):
        if settings.tls.mode == "provided" and not (settings.tls.cert and settings.tls.key):
            return [("tls", "mode 'provided' needs both tls.cert and tls.key")]
        return []

    def steps(self, ctx: Context):
        s = ctx.settings
        acme = s.tls.mode == "acme"
        steps = [Packages("nginx", *(["certbot"] if acme else [])), Directory("/etc/nginx/tls", mode="0755")]
        steps += self._certificate(ctx)
        steps += [
            Directory("/var/cache/nginx"),  # nginx creates its proxy cache below it
            File(CONF, render(ctx), validate="nginx -t -q -c {}", notify=RELOAD),
            Service("nginx"),
        ]
        # The exporter reads the stub_status page served on the loopback interface; its
        # flags differ between the distributions' exporter versions (distros.py).
        args = distros.of(ctx.facts.host("os")).nginx_exporter_args(
            f"http://127.0.0.1:{s.nginx.status_port}/stub_status", ctx.host.private_address, EXPORTER_PORT
        )
        steps += exporter_steps(EXPORTER, env_file("components/nginx", ARGS=args), secret=False)
        if acme:
            steps.append(_acme_certificate(ctx))
        return steps

    def handlers(self, ctx: Context):
        # A certificate can change without the config: test the live set before reloading.
        return {
            "reload": Command("reload nginx", "nginx -t -q && systemctl reload-or-restart nginx"),
            **exporter_handlers(EXPORTER),
        }

    def checks(self, inventory):
        return [
            c
            for h in self.hosts(inventory)
            for c in (
                Check(f"HTTP redirects to HTTPS on {h.name}", _redirects(h), h.name),
                Check(f"HTTPS with TLS 1.2+, HTTP/2 and HSTS on {h.name}", _serves_tls(h), h.name),
            )
        ]

    def _certificate(self, ctx: Context):
        tls, domain = ctx.settings.tls, ctx.settings.domain
        if tls.mode == "provided":
            return [
                File(CERT, _read(tls.cert, "tls.cert"), mode="0644", notify=RELOAD),
                SecretFile(KEY, _read(tls.key, "tls.key"), mode="0600", notify=RELOAD),
            ]
        if tls.mode == "acme":
            # A placeholder only until certbot's certificate is linked in its place.
            return [_self_signed(domain, unless=f"test -e {CERT}"), Directory(ACME_WEBROOT)]
        # Regenerated when missing, expiring within 30 days (a deploy renews it: Mozilla's
        # profile wants at most 366 days), or made for another domain.
        valid = (
            f"test -s {KEY} && openssl x509 -in {CERT} -noout -checkend 2592000 && "
            f"openssl x509 -in {CERT} -noout -ext subjectAltName | grep -xF >/dev/null {shlex.quote('    DNS:' + domain)}"
        )
        return [_self_signed(domain, unless=valid)]


def render(ctx: Context) -> str:
    apps = ctx.inventory.with_role("app")
    if not apps:
        raise InventoryError(["nginx: no host has the 'app' role to proxy to"])
    return ctx.render(
        "nginx/nginx.conf.j2",
        app_servers=[h.private_address for h in apps],
        app_port=ctx.settings.mattermost.port,
        # Two connections per client (client side, upstream side), room for every user's websocket.
        worker_connections=min(max(1024, ctx.settings.expected_users * 2), 65536),
        acme=ctx.settings.tls.mode == "acme",
        acme_webroot=ACME_WEBROOT,
        cert=CERT,
        key=KEY,
    )


def upstream_state_script(address: str, port: int, down: bool) -> str:
    """Mark one app server `down` (drained: NGINX sends it no new request) or back up in
    the `backend` upstream of the live config, checked with `nginx -t` before it replaces
    the live file, then reload (the old workers finish the requests they hold). The next
    deploy renders the file without `down`, so a deploy also ends any drain. Prints
    "changed" or "unchanged"."""
    server = re.escape(f"{address}:{port}")
    edit = r"s/ down;/;/" if not down else r"s/ down;/;/; s/;[[:space:]]*$/ down;/"
    sed = (
        f"/^[[:space:]]*upstream backend[[:space:]]*\\{{/,/^[[:space:]]*\\}}/ "
        f"{{ /^[[:space:]]*server {server}[ ;]/ {{ {edit} }} }}"
    )
    return f"""\
set -e
conf={CONF}
grep -E '^[[:space:]]*server {server}[ ;]' "$conf" >/dev/null || {{
  echo "{address}:{port} is not an upstream server in $conf (deployed with another app tier?)" >&2; exit 3; }}
new=$(mktemp /etc/nginx/.mmdeploy-upstream.XXXXXX)
trap 'rm -f "$new"' EXIT
sed -E '{sed}' "$conf" > "$new"
if cmp -s "$new" "$conf"; then echo unchanged; exit 0; fi
nginx -t -q -c "$new"
chmod 0644 "$new"
mv -f "$new" "$conf"
nginx -t -q
systemctl reload nginx
echo changed
"""


def drained_servers_script() -> str:
    """The app servers marked down in this proxy's live upstream, one address:port a line."""
    return (
        f"sed -nE '/^[[:space:]]*upstream backend/,/^[[:space:]]*\\}}/ "
        f"s/^[[:space:]]*server ([^ ;]+)[^;]* down;.*/\\1/p' {CONF}"
    )


def _self_signed(domain: str, unless: str) -> Command:
    d = shlex.quote(domain)
    # umask 077: the key is created unreadable to others; openssl writes it to a file only.
    script = (
        f"set -e\numask 077\n"
        f"openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN={d} "
        f"-addext subjectAltName=DNS:{d} -keyout {KEY}.new -out {CERT}.new 2>/dev/null\n"
        f"chmod 0644 {CERT}.new\nmv -f {KEY}.new {KEY}\nmv -f {CERT}.new {CERT}\n"
    )
    return Command(f"self-signed certificate for {domain}", script, unless=unless, notify=RELOAD)


def _acme_certificate(ctx: Context) -> Command:
    s = ctx.settings
    live = f"/etc/letsencrypt/live/{s.domain}"
    contact = f"-m {shlex.quote(s.tls.acme_email)}" if s.tls.acme_email else "--register-unsafely-without-email"
    script = (
        "set -e\n"
        # The challenge location must be live before Let's Encrypt asks for it.
        "systemctl reload-or-restart nginx\n"
        f"certbot certonly --non-interactive --agree-tos {contact} --webroot -w {ACME_WEBROOT} "
        f"-d {shlex.quote(s.domain)} --deploy-hook 'systemctl reload nginx'\n"
        f"ln -sfn {live}/fullchain.pem {CERT}\nln -sfn {live}/privkey.pem {KEY}\n"
    )
    return Command(
        f"Let's Encrypt certificate for {s.domain}",
        script,
        unless=f'test "$(readlink {CERT})" = {live}/fullchain.pem && test -e {live}/fullchain.pem',
        notify=RELOAD,
    )


def _read(path: str | None, key: str) -> bytes:
    try:
        return Path(path or "").expanduser().read_bytes()
    except OSError as e:
        raise InventoryError([f"{key}: cannot read {path}: {e.strerror}"]) from None


# --- verify ------------------------------------------------------------------------------


def _tls_context(host: Host, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if host.settings.tls.mode == "self-signed":  # nothing to verify it against
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    return context


def _redirects(host: Host):
    def check() -> str | None:
        conn = http.client.HTTPConnection(host.address, 80, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": host.settings.domain})
            response = conn.getresponse()
            location = response.getheader("Location", "")
        except OSError as e:
            return f"http://{host.address}/: {e}"
        finally:
            conn.close()
        if response.status != 301 or not location.startswith("https://"):
            return f"http://{host.address}/ answered {response.status} {location!r}, expected a 301 to https://"
        return None

    return check


def _serves_tls(host: Host):
    def check() -> str | None:
        domain = host.settings.domain
        try:
            with socket.create_connection((host.address, 443), timeout=10) as raw:
                with _tls_context(host, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname=domain) as tls:
                    version, alpn = tls.version(), tls.selected_alpn_protocol()
            conn = http.client.HTTPSConnection(host.address, 443, timeout=10, context=_tls_context(host, ["http/1.1"]))
            try:
                conn.request("HEAD", "/", headers={"Host": domain})
                hsts = conn.getresponse().getheader("Strict-Transport-Security")
            finally:
                conn.close()
        except (OSError, ssl.SSLError) as e:
            return f"https://{host.address}/: {e}"
        problems = []
        if version not in ("TLSv1.2", "TLSv1.3"):
            problems.append(f"negotiated {version}")
        if alpn != "h2":
            problems.append(f"ALPN chose {alpn!r}, not h2")
        if not hsts:
            problems.append("no Strict-Transport-Security header")
        return "; ".join(problems) or None

    return check


COMPONENTS = [Nginx()]
