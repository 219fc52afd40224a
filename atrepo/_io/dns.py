"""DNS for the drivers: TXT lookups behind a small protocol, over dnspython by default.

Flows yield :class:`~atrepo._flows.effects.DnsTxt`; the drivers in :mod:`atrepo._io.http`
answer it through a :class:`DnsResolver` (threads) or :class:`AsyncDnsResolver` (tasks), so
tests can inject fakes. The default implementations wrap dnspython's stub resolver. Every
failure (NXDOMAIN, no answer, timeout, no nameserver) is a
:class:`~atrepo._flows.effects.DnsFailure` with a short reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

import dns.exception as dns_exception
import dns.resolver as dns_resolver

from .._flows.effects import DnsFailure

if TYPE_CHECKING:
    import dns.asyncresolver as dns_asyncresolver

__all__ = ["AsyncDnsResolver", "AsyncSystemDnsResolver", "DnsResolver", "SystemDnsResolver"]

DEFAULT_DNS_TIMEOUT: Final = 10.0  # seconds for one TXT lookup, all retries included


class DnsResolver(Protocol):
    """Looks up TXT records; raises :class:`DnsFailure` when there are none to give."""

    def txt(self, name: str) -> Sequence[str]:
        """Return the TXT records of ``name``, one string each."""
        ...


class AsyncDnsResolver(Protocol):
    """The ``async`` twin of :class:`DnsResolver`."""

    async def txt(self, name: str) -> Sequence[str]:
        """Return the TXT records of ``name``, one string each."""
        ...


class SystemDnsResolver:
    """:class:`DnsResolver` over dnspython's stub resolver (the system's nameservers).

    Args:
        timeout: seconds allowed for one lookup, retries included.
        resolver: a configured ``dns.resolver.Resolver``; by default one reading the system
            configuration is created on first use.
    """

    def __init__(self, *, timeout: float = DEFAULT_DNS_TIMEOUT,
                 resolver: dns_resolver.Resolver | None = None) -> None:
        self._timeout = timeout
        self._resolver = resolver

    def txt(self, name: str) -> list[str]:
        """Return the TXT records of ``name``.

        Raises:
            DnsFailure: NXDOMAIN, no TXT records, timeout, no nameserver, no configuration.
        """
        try:
            if self._resolver is None:
                self._resolver = dns_resolver.Resolver()  # reads /etc/resolv.conf
            answer = self._resolver.resolve(name, "TXT", lifetime=self._timeout, search=False)
        except (dns_exception.DNSException, OSError) as exc:
            raise DnsFailure(name, _dns_reason(exc)) from exc
        return _txt_strings(answer)


class AsyncSystemDnsResolver:
    """:class:`AsyncDnsResolver` over ``dns.asyncresolver`` (the system's nameservers).

    Args:
        timeout: seconds allowed for one lookup, retries included.
        resolver: a configured ``dns.asyncresolver.Resolver``; by default one reading the
            system configuration is created on first use.
    """

    def __init__(self, *, timeout: float = DEFAULT_DNS_TIMEOUT,
                 resolver: dns_asyncresolver.Resolver | None = None) -> None:
        self._timeout = timeout
        self._resolver = resolver

    async def txt(self, name: str) -> list[str]:
        """Return the TXT records of ``name``.

        Raises:
            DnsFailure: NXDOMAIN, no TXT records, timeout, no nameserver, no configuration.
        """
        import dns.asyncresolver as dns_asyncresolver  # imports asyncio: keep it off sync paths

        try:
            if self._resolver is None:
                self._resolver = dns_asyncresolver.Resolver()
            answer = await self._resolver.resolve(name, "TXT", lifetime=self._timeout,
                                                  search=False)
        except (dns_exception.DNSException, OSError) as exc:
            raise DnsFailure(name, _dns_reason(exc)) from exc
        return _txt_strings(answer)


def _txt_strings(answer: dns_resolver.Answer) -> list[str]:
    """Return each TXT record of ``answer`` as one string (its character-strings joined)."""
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _dns_reason(exc: Exception) -> str:
    """Return a short reason for a DNS failure, for error messages."""
    if isinstance(exc, dns_resolver.NXDOMAIN):
        return "NXDOMAIN"
    if isinstance(exc, dns_resolver.NoAnswer):
        return "no TXT records"
    if isinstance(exc, dns_exception.Timeout):
        return "timeout"
    if isinstance(exc, dns_resolver.NoNameservers):
        return "no nameserver answered"
    return type(exc).__name__
