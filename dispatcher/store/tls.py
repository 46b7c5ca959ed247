"""TLS for Redis: a ``rediss://`` URL's ``ssl_*`` query options as an ``ssl.SSLContext``.

redis-py reads the same options from the same URL for its own connections; reading them
here the same way (names, values and defaults) means the fast lane and redis-py trust,
verify and present the same certificates. Unlike redis-py, an unknown option or value is
an error at start rather than a surprise at the first connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["TLS_OPTIONS", "tls_context"]

_BOOLS = {
    **dict.fromkeys(("1", "t", "true", "y", "yes", "on"), True),
    **dict.fromkeys(("0", "f", "false", "n", "no", "off"), False),
}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _flag(value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise ValueError("expected true or false") from None


def _cert_reqs(value: str) -> ssl.VerifyMode:
    try:
        return _CERT_REQS[value]
    except KeyError:
        raise ValueError(f"expected one of {', '.join(_CERT_REQS)}") from None


def _tls_version(value: str) -> ssl.TLSVersion:
    try:
        return ssl.TLSVersion(int(value))
    except ValueError:
        raise ValueError("expected a TLSVersion number, e.g. 771 for TLS 1.2") from None


def _verify_flags(value: str) -> tuple[ssl.VerifyFlags, ...]:
    names = [name.strip() for name in value.strip("[]").split(",")]
    unknown = [name for name in names if name not in ssl.VerifyFlags.__members__]
    if unknown:
        raise ValueError(f"unknown flag(s) {', '.join(unknown)}")
    return tuple(ssl.VerifyFlags[name] for name in names)


# Every ssl_* option redis-py takes from a URL, with its reading of the value.
TLS_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_ca_data": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_password": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _flag,
    "ssl_min_version": _tls_version,
    "ssl_ciphers": str,
    "ssl_include_verify_flags": _verify_flags,
    "ssl_exclude_verify_flags": _verify_flags,
}


def tls_context(scheme: str, query: str) -> ssl.SSLContext | None:
    """The SSL context for a URL's scheme and ``ssl_*`` query options, built as redis-py
    builds its own: certificates verified (against the system's CAs unless ``ssl_ca_*``
    name others) and the host name checked, unless the options say otherwise. ``None``
    for ``redis://``. A misspelt or unusable option is a ``ValueError`` here, at start,
    rather than a failed handshake later."""
    raw = {name: values[0] for name, values in parse_qs(query).items() if name.startswith("ssl_")}
    if scheme != "rediss":
        if raw:
            raise ValueError(f"Redis URL option(s) {', '.join(raw)} need a rediss:// URL")
        return None
    unknown = [name for name in raw if name not in TLS_OPTIONS]
    if unknown:
        known = ", ".join(TLS_OPTIONS)
        raise ValueError(f"unknown Redis URL option(s) {', '.join(unknown)}; known: {known}")
    return _build_context({name: _parse_option(name, value) for name, value in raw.items()})


def _parse_option(name: str, value: str) -> Any:
    try:
        return TLS_OPTIONS[name](value)
    except ValueError as exc:
        shown = "***" if name == "ssl_password" else repr(value)
        raise ValueError(f"invalid Redis URL option {name}={shown}: {exc}") from None


def _build_context(options: dict[str, Any]) -> ssl.SSLContext:
    cert_reqs: ssl.VerifyMode = options.get("ssl_cert_reqs", ssl.CERT_REQUIRED)
    context = ssl.create_default_context()
    # As redis-py: no host name check without a verified certificate.
    context.check_hostname = options.get("ssl_check_hostname", True) and (
        cert_reqs != ssl.CERT_NONE
    )
    context.verify_mode = cert_reqs
    for flag in options.get("ssl_include_verify_flags", ()):
        context.verify_flags |= flag
    for flag in options.get("ssl_exclude_verify_flags", ()):
        context.verify_flags &= ~flag
    _load_certificates(context, options)
    if "ssl_min_version" in options:
        context.minimum_version = options["ssl_min_version"]
    if "ssl_ciphers" in options:
        try:
            context.set_ciphers(options["ssl_ciphers"])
        except ssl.SSLError as exc:
            raise ValueError(f"invalid Redis URL option ssl_ciphers: {exc}") from None
    return context


def _load_certificates(context: ssl.SSLContext, options: dict[str, Any]) -> None:
    """The client's own certificate and the CAs to trust; a file that cannot be read or
    a key that cannot be decrypted is a ``ValueError`` naming the option."""
    certfile, keyfile = options.get("ssl_certfile"), options.get("ssl_keyfile")
    if keyfile and not certfile:
        raise ValueError("Redis URL option ssl_keyfile needs ssl_certfile")
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, options.get("ssl_password", _no_password))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            files = f"{certfile}" + (f", {keyfile}" if keyfile else "")
            raise ValueError(
                f"Redis URL options ssl_certfile/ssl_keyfile/ssl_password: cannot load the "
                f"client certificate and key from {files} ({exc})"
            ) from None
    cafile, capath = options.get("ssl_ca_certs"), options.get("ssl_ca_path")
    cadata = options.get("ssl_ca_data")
    if cafile or capath or cadata:
        try:
            context.load_verify_locations(cafile, capath, cadata)
        except OSError as exc:
            raise ValueError(
                f"Redis URL options ssl_ca_certs/ssl_ca_path/ssl_ca_data: cannot load the "
                f"CA certificates ({exc})"
            ) from None


def _no_password() -> str:
    """Asked for when the key is encrypted and the URL has no ``ssl_password`` (OpenSSL's
    default is a prompt on the terminal, which would hang a service)."""
    raise ValueError("the private key is encrypted and the URL has no ssl_password")
