"""The push proxy (role pushproxy): mattermost-push-proxy, Mattermost's Apache-2.0 relay
between the app servers and Apple's (APNs) and Google's (FCM) push services, for mobile apps
a site builds and signs itself.

Installed from its official release archive (URL + sha256) into /opt/mattermost-push-proxy,
as the archive lays it out (bin/, config/, logs/), run by the system user
`mattermost-push-proxy` under systemd. mmdeploy writes config/mattermost-push-proxy.json
itself; the APNs and FCM credentials are files on the control machine, uploaded to
/etc/mattermost-push-proxy/ as 0600 secret files. With no credentials the proxy still runs,
and refuses pushes for the apps it has none for (as Mattermost's own docs describe).

Several push proxies sit behind the internal balancer (`Balanced`), which checks each with
GET /version; the app and job servers reach them at balancer.endpoint(inventory, "pushproxy").
"""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import Field

from ..artifacts import Artifact
from ..component import CONTROL, Balanced, Check, Component, Context, Info, Metrics, Port, Role, Warn
from ..errors import MMDeployError
from ..grammar import Source
from ..ops import Command, Directory, File, Group, Service, Unpacked, User, unit
from ..ops.secretfile import SecretFile
from ..secrets import Secret
from ..settings import Section

HOME = "/opt/mattermost-push-proxy"
CONFIG = f"{HOME}/config/mattermost-push-proxy.json"
CREDENTIALS = "/etc/mattermost-push-proxy"
USER = "mattermost-push-proxy"
ARCHIVE = "mattermost-push-proxy-linux-amd64.tar.gz"

CERT_PASSWORD = Secret(
    "pushproxy_apple_cert_password",
    "the password of the APNs .pem certificate's private key (when it has one)",
    generate=False,
)


class ApplePush(Section):
    """One iOS app: APNs token authentication (an .p8 key with its key id and team id,
    Apple's recommended way) or a .pem certificate with its private key."""

    type: Literal["apple", "apple_rn"] = "apple_rn"  # apple_rn: the Mattermost mobile app as you build it
    topic: str = Field(min_length=1)  # the app's bundle identifier
    development: bool = False  # APNs sandbox (development builds)
    auth_key_file: str | None = None  # AuthKey_XXXXXXXXXX.p8 on the control machine
    auth_key_id: str = ""
    team_id: str = ""
    cert_file: str | None = None  # or: a .pem with the certificate and its key


class AndroidPush(Section):
    """One Android app: its Firebase service-account JSON file (FCM HTTP v1)."""

    type: Literal["android", "android_rn"] = "android_rn"
    service_file: str  # on the control machine


class PushProxySettings(Section):
    version: str = Field(default="6.5.0", pattern=r"^\d+\.\d+\.\d+$")
    # The release archive: the official URL unless a mirror or local file is given; the
    # sha256 is required (from the release page).
    url: Source | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    port: int = Field(default=8066, ge=1, le=65535)
    throttle_per_sec: int = Field(default=300, ge=1)  # requests per second per sender
    metrics: bool = True  # Prometheus /metrics on the same port
    apple: list[ApplePush] = []
    android: list[AndroidPush] = []


def release_url(version: str) -> str:
    """The official download URL: the asset's name carries no version, its path does."""
    return f"https://github.com/mattermost/mattermost-push-proxy/releases/download/v{version}/{ARCHIVE}"


def artifact(settings) -> Artifact:
    pp = settings.pushproxy
    if not pp.sha256:
        raise MMDeployError(
            "settings.pushproxy.sha256 is required: the SHA-256 of the release archive "
            f"(published with {release_url(pp.version)})"
        )
    return Artifact("mattermost-push-proxy", pp.version, pp.url or release_url(pp.version), pp.sha256)


def credential_problems(pp: PushProxySettings) -> list[tuple[str, str]]:
    """Credential files that are not there, incomplete APNs settings, an app listed twice."""
    problems = []

    def need_file(key: str, path: str | None) -> None:
        if path and not os.path.isfile(os.path.expanduser(path)):
            problems.append((key, f"no such file on this machine: {path}"))

    seen: set[str] = set()
    for i, a in enumerate(pp.apple):
        key = f"pushproxy.apple.{i}"
        token = a.auth_key_file or a.auth_key_id or a.team_id
        if token and not (a.auth_key_file and a.auth_key_id and a.team_id):
            problems.append((key, "APNs token authentication needs auth_key_file, auth_key_id and team_id together"))
        if not token and not a.cert_file:
            problems.append((key, "give auth_key_file with auth_key_id and team_id (APNs token), or cert_file (.pem)"))
        need_file(f"{key}.auth_key_file", a.auth_key_file)
        need_file(f"{key}.cert_file", a.cert_file)
        if a.type in seen:
            problems.append((f"{key}.type", f"app type {a.type!r} is configured twice"))
        seen.add(a.type)
    for i, g in enumerate(pp.android):
        need_file(f"pushproxy.android.{i}.service_file", g.service_file)
        if g.type in seen:
            problems.append((f"pushproxy.android.{i}.type", f"app type {g.type!r} is configured twice"))
        seen.add(g.type)
    return problems


def _read(path: str, key: str) -> bytes:
    try:
        return open(os.path.expanduser(path), "rb").read()
    except OSError as e:
        raise MMDeployError(f"settings.{key}: cannot read {path}: {e}") from None


def config(pp: PushProxySettings, cert_password: str = "") -> dict:
    """config/mattermost-push-proxy.json: the release's sample format, with the credential
    files where the deploy puts them."""
    apple = [
        {
            "Type": a.type,
            "ApplePushUseDevelopment": a.development,
            "ApplePushCertPrivate": f"{CREDENTIALS}/{a.type}.pem" if a.cert_file else "",
            "ApplePushCertPassword": cert_password if a.cert_file else "",
            "ApplePushTopic": a.topic,
            "AppleAuthKeyFile": f"{CREDENTIALS}/{a.type}.p8" if a.auth_key_file else "",
            "AppleAuthKeyID": a.auth_key_id,
            "AppleTeamID": a.team_id,
        }
        for a in pp.apple
    ]
    android = [{"Type": g.type, "ServiceFileLocation": f"{CREDENTIALS}/{g.type}.json"} for g in pp.android]
    return {
        "ListenAddress": f":{pp.port}",
        "ThrottlePerSec": pp.throttle_per_sec,
        "ThrottleMemoryStoreSize": 50000,
        # Behind the internal balancer every request comes from it: throttle per original sender.
        "ThrottleVaryByHeader": "X-Forwarded-For",
        "EnableMetrics": pp.metrics,
        "SendTimeoutSec": 30,
        "RetryTimeoutSec": 8,
        "ApplePushSettings": apple,
        "AndroidPushSettings": android,
        "EnableConsoleLog": True,  # to the journal
        "EnableFileLog": False,
        "LogFileLocation": "",
        "LogFormat": "plain",
    }


def platforms(pp: PushProxySettings) -> list[str]:
    """The app types this proxy can deliver to (those with credentials)."""
    return [a.type for a in pp.apple] + [g.type for g in pp.android]


class PushProxy(Component):
    name = "pushproxy"
    roles = ("pushproxy",)
    owns_roles = (
        Role("pushproxy", "mattermost-push-proxy: mobile push notifications (APNs, FCM)", {"multi": 2, "cluster": 2}),
    )
    settings = {"pushproxy": PushProxySettings}
    secrets = (CERT_PASSWORD,)
    metrics = (Metrics("pushproxy", lambda s: s.pushproxy.port, when=lambda h: h.settings.pushproxy.metrics),)
    balanced = (Balanced("pushproxy", port=lambda s: s.pushproxy.port, health="/version"),)
    # Mattermost reaches it through the balancer (derived); verify asks each node's version.
    ports = (Port("pushproxy", lambda h: h.settings.pushproxy.port, (CONTROL,), why="verify from the control machine"),)
    after = ("base",)

    def validate(self, settings):
        return credential_problems(settings.pushproxy)

    def steps(self, ctx: Context):
        pp = ctx.settings.pushproxy
        password = ""
        if any(a.cert_file for a in pp.apple):
            password = ctx.secrets.optional(CERT_PASSWORD) or ""
        restart = ("restart",)
        steps = [
            Group(USER),
            User(USER, home=HOME),
            # Unpacked replaces HOME whole on a version change: the config and logs/ below
            # are written again right after it.
            Unpacked(artifact(ctx.settings), HOME, notify=restart),
            Directory(f"{HOME}/logs", owner=USER, group=USER, mode="0750"),
            Directory(CREDENTIALS, owner="root", group=USER, mode="0750"),
        ]
        for a in pp.apple:
            if a.auth_key_file:
                steps.append(
                    SecretFile(
                        f"{CREDENTIALS}/{a.type}.p8",
                        _read(a.auth_key_file, "pushproxy.apple"),
                        owner=USER,
                        group=USER,
                        notify=restart,
                    )
                )
            if a.cert_file:
                steps.append(
                    SecretFile(
                        f"{CREDENTIALS}/{a.type}.pem",
                        _read(a.cert_file, "pushproxy.apple"),
                        owner=USER,
                        group=USER,
                        notify=restart,
                    )
                )
        for g in pp.android:
            steps.append(
                SecretFile(
                    f"{CREDENTIALS}/{g.type}.json",
                    _read(g.service_file, "pushproxy.android"),
                    owner=USER,
                    group=USER,
                    notify=restart,
                )
            )
        text = json.dumps(config(pp, password), indent=4) + "\n"
        if password:  # the certificate's password is in it
            steps.append(SecretFile(CONFIG, text, owner="root", group=USER, mode="0640", notify=restart))
        else:
            steps.append(File(CONFIG, text, owner="root", group=USER, mode="0640", notify=restart))
        steps += [
            unit(
                "mattermost-push-proxy.service",
                ctx.render("pushproxy/mattermost-push-proxy.service.j2", home=HOME, config=CONFIG),
                notify=restart,
            ),
            Service("mattermost-push-proxy"),
        ]
        return steps

    def handlers(self, ctx: Context):
        return {
            "restart": Command("restart mattermost-push-proxy", "systemctl restart mattermost-push-proxy", timeout=60)
        }

    def checks(self, inventory):
        hosts = self.hosts(inventory)
        if not hosts:
            return []
        checks = [Check(f"push proxy on {h.name} answers /version", _version(h), h.name) for h in hosts]
        checks.append(Check("push proxy credentials", lambda: _credentials(inventory.settings.pushproxy)))
        return checks


def _version(host):
    """GET /version on the node itself (what the balancer's health check asks)."""

    def run() -> str | None:
        import httpx

        url = f"http://{host.address}:{host.settings.pushproxy.port}/version"
        try:
            r = httpx.get(url, timeout=10)
            version = r.json().get("version") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as e:
            return f"{url}: {type(e).__name__}: {e}"
        if version is None:
            return f"{url}: HTTP {r.status_code} {r.text[:100]}"
        wanted = host.settings.pushproxy.version
        return Info(f"version {version}") if version == wanted else f"runs version {version}, expected {wanted}"

    return run


def _credentials(pp: PushProxySettings) -> str | None:
    if platforms(pp):
        return Info(f"delivers to {', '.join(platforms(pp))}")
    return Warn(
        "no APNs or FCM credentials configured (pushproxy.apple, pushproxy.android): "
        "the proxies run, but refuse every mobile push"
    )


COMPONENTS = [PushProxy()]
