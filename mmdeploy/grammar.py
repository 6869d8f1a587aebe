"""The grammar of inventory values that end up in a shell script, a config file or SQL.

Every such value is either validated here to its real grammar (host names and domains
after RFC 1123, addresses and networks with `ipaddress`, URLs, e-mail addresses, user
names, files that must exist) or quoted for its target where it is used. These are
pydantic types: a settings section declares `domain: Hostname = "..."`, and a value that
does not fit is refused at load time with file, key and what was expected.

Every string field of a settings section also refuses control characters (a newline in a
value would start a new line in the config file it lands in) unless the field is marked
multi-line (`Field(json_schema_extra={"multiline": True})`): see settings.Section.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def control_characters(value: str) -> list[str]:
    """The control (and other invisible format) characters in `value`, as escapes."""
    return sorted({repr(c)[1:-1] for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})


def single_line(value: str) -> str:
    bad = control_characters(value)
    if bad:
        raise ValueError(f"expected a single line without control characters, found {', '.join(bad)}")
    return value


def is_hostname(value: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, each
    1-63 long, 253 in all; the last label is not all digits (that is an IPv4 address)."""
    if not value or len(value) > 253:
        return False
    labels = value.split(".")
    return all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def hostport(address: str, port: int) -> str:
    """`address:port`, an IPv6 address in brackets (a listen or connect address)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def hostname(value: str) -> str:
    if not is_hostname(value):
        raise ValueError("expected a host name (RFC 1123: letters, digits and hyphens in dot-separated labels)")
    return value


def address(value: str) -> str:
    """An IP address or a host name: where a host is reached."""
    if not (is_ip(value) or is_hostname(value)):
        raise ValueError("expected an IP address or host name (RFC 1123)")
    return value


def ip(value: str) -> str:
    if not is_ip(value):
        raise ValueError("expected an IP address")
    return value


def network(value: str) -> str:
    """An IP address or a network in CIDR form, without host bits set."""
    try:
        if "/" not in value:
            ipaddress.ip_address(value)
        else:
            ipaddress.ip_network(value, strict=True)
        return value
    except ValueError as e:
        if "host bits set" in str(e):
            net = ipaddress.ip_network(value, strict=False)
            raise ValueError(f"expected a network address: host bits are set (did you mean {net}?)") from None
        raise ValueError("expected an IP address or a network in CIDR form (10.0.0.0/24)") from None


def email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}", local) or not is_hostname(domain):
        raise ValueError("expected an e-mail address (name@host.domain)")
    return value


def url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """An absolute URL of one of `schemes`, with a valid host and port, and nothing that
    needs quoting (whitespace, quotes, backslashes, angle brackets, backticks)."""
    if re.search(r"[\s\"'`\\<>{}|^]", value) or control_characters(value):
        raise ValueError("expected a URL without spaces, quotes or backslashes")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("expected a URL (scheme://host[:port]/path)") from None
    if parts.scheme not in schemes:
        raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
    host = parts.hostname or ""
    if not (is_hostname(host) or is_ip(host)) or (port is not None and not 0 < port < 65536):
        raise ValueError("expected a URL with a valid host name or address and port")
    return value


def http_url(value: str) -> str:
    return url(value)


def source(value: str) -> str:
    """Where an artifact comes from: an http(s) URL, or a local file (a path or file://),
    which must be there now: a later step reads it."""
    if value.startswith("file://"):
        readable_file(value[7:])
        return value
    if "://" in value:
        return url(value, ("http", "https"))
    return readable_file(value)


def sysctl_key(value: str) -> str:
    """A kernel parameter's name as sysctl writes it (net.ipv4.tcp_fin_timeout): it names
    a file under /etc/sysctl.d too."""
    if not re.fullmatch(r"[a-z0-9_]+(?:[./][A-Za-z0-9_-]+)+", value):
        raise ValueError("expected a kernel parameter name (net.ipv4.tcp_fin_timeout)")
    return value


def sysctl_value(value: str) -> str:
    """A kernel parameter's value: numbers, words, or several separated by spaces or commas."""
    if not re.fullmatch(r"[A-Za-z0-9_.:,/ -]{1,200}", value):
        raise ValueError("expected a kernel parameter value (numbers or words, spaces or commas between)")
    return value


def path(value: str) -> str:
    if not value or control_characters(value) or "\0" in value:
        raise ValueError("expected a file path without control characters")
    return value


def readable_file(value: str) -> str:
    """A file on the control machine that a later step reads: checked now, before any
    host is contacted."""
    path(value)
    p = Path(value).expanduser()
    try:
        if not p.is_file():
            raise ValueError("no such file" if not p.exists() else "not a regular file")
        with open(p, "rb") as f:
            f.read(1)
    except OSError as e:
        raise ValueError(f"cannot read it: {e.strerror}") from None
    return value


def unix_user(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError("expected a user name: lowercase letters, digits, '_' and '-', at most 32")
    return value


def domain_list(value: str) -> str:
    """Comma-separated host names (e-mail domains), or empty."""
    names = [n.strip() for n in value.split(",")] if value.strip() else []
    bad = [n for n in names if not is_hostname(n)]
    if bad:
        raise ValueError(f"expected comma-separated domains, {bad[0]!r} is not one")
    return value


def nginx_block(value: str) -> str:
    """Raw NGINX directives for the inside of one block: every quote closed, braces
    balanced and never closing the block they are put in, ending with ';' or '}'."""
    if any(c in value for c in "\0\r") or [c for c in control_characters(value) if c not in ("\\n", "\\t")]:
        raise ValueError("expected NGINX directives without control characters")
    depth, quote, i, text = 0, "", 0, value
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise ValueError("expected NGINX directives: a '}' closes the block they are placed in")
        i += 1
    if quote:
        raise ValueError(f"expected NGINX directives: a {quote} quote is not closed")
    if depth:
        raise ValueError("expected NGINX directives: a '{' is not closed")
    code = re.sub(r"#[^\n]*", "", value).strip()
    if code and code[-1] not in ";}":
        raise ValueError("expected NGINX directives ending with ';' or '}'")
    return value


SingleLine = Annotated[str, AfterValidator(single_line)]
Hostname = Annotated[str, AfterValidator(hostname)]
Address = Annotated[str, AfterValidator(address)]
IP = Annotated[str, AfterValidator(ip)]
Network = Annotated[str, AfterValidator(network)]
Email = Annotated[str, AfterValidator(email)]
URL = Annotated[str, AfterValidator(http_url)]
Source = Annotated[str, AfterValidator(source)]
FilePath = Annotated[str, AfterValidator(path)]
SysctlKey = Annotated[str, AfterValidator(sysctl_key)]
SysctlValue = Annotated[str, AfterValidator(sysctl_value)]
ReadableFile = Annotated[str, AfterValidator(readable_file)]
UnixUser = Annotated[str, AfterValidator(unix_user)]
DomainList = Annotated[str, AfterValidator(domain_list)]
NginxBlock = Annotated[str, AfterValidator(nginx_block)]
