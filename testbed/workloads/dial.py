"""Acts: the clients behind netexec's /dial (test/images/agnhost/netexec dialHTTP, dialUDP,
dialSCTP): one request each, a 5 s limit, failures worded as Go words them."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from testbed.workloads.golang import errno_text, join_host_port


class DialError(Exception):
    pass


def resolve(host: str, port: str, network: str) -> tuple[str, int]:
    """net.ResolveTCPAddr / ResolveUDPAddr of host:port; ValueError with Go's words."""
    try:
        number = int(port) if port else 0
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"address {port}: invalid port") from None
    try:
        kind = socket.SOCK_DGRAM if network == "udp" else socket.SOCK_STREAM
        info = socket.getaddrinfo(host or None, number, type=kind)
    except (OSError, UnicodeError) as err:
        raise ValueError(f"lookup {host}: {err}") from None
    return info[0][4][0], number


def dial_http(request: str, address: tuple[str, int]) -> str:
    """dialHTTP: GET http://ADDR/REQUEST with a 5 s client timeout; the body of any status."""
    hostport = join_host_port(*address)
    url = f"http://{hostport}/{request}"
    try:
        with socket.create_connection(address, timeout=5) as sock:
            target = urlsplit(url)
            path = (target.path or "/") + (f"?{target.query}" if target.query else "")
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: Go-http-client/1.1\r\n"
                         "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except TimeoutError:
        raise DialError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                        'awaiting headers)') from None
    except OSError as err:
        raise DialError(f'Get "{url}": dial tcp {hostport}: connect: '
                        f'{errno_text(err)}') from None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        raise DialError(f'Get "{url}": EOF')
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return body.decode(errors="replace")


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def dial_udp(request: str, address: tuple[str, int]) -> str:
    """dialUDP: one datagram, an answer within 5 s."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
        except OSError as err:
            raise DialError(f"udp dial failed. err:{err}") from None
        local = join_host_port(*sock.getsockname()[:2])
        remote = join_host_port(*address)
        try:
            sock.send(request.encode())
        except OSError as err:
            raise DialError(f"udp connection write failed. err:write udp {local}->{remote}: "
                            f"write: {errno_text(err)}") from None
        sock.settimeout(5)
        try:
            data = sock.recv(2048)
        except OSError as err:
            why = "i/o timeout" if isinstance(err, TimeoutError) else f"read: {errno_text(err)}"
            raise DialError(f"reading from udp connection failed. err:'read udp {local}->{remote}: "
                            f"{why}'") from None
        if not data:
            raise DialError("reading from udp connection failed. err:'<nil>'")
        return data.decode(errors="replace")


def dial_sctp(request: str, address: tuple[str, int]) -> str:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as err:
        raise DialError(f"sctp dial failed. err:{err} (this kernel has no SCTP support)") from None
    with sock:
        try:
            sock.connect(address)
        except OSError as err:
            raise DialError(f"sctp dial failed. err:{err}") from None
        sock.sendall(request.encode())
        sock.settimeout(5)
        try:
            data = sock.recv(1024)
        except OSError as err:
            raise DialError(f"reading from sctp connection failed. err:'{err}'") from None
        if not data:
            raise DialError("reading from sctp connection failed. err:'EOF'")
        return data.decode(errors="replace")
