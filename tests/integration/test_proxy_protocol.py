#!/usr/bin/env python3
"""PROXY protocol both ways, with the real binary.

The upstream is tg_upstream.py in mode "proxy": it parses the header tlsgate
sends (its own Python parser, not tlsgate's C code) and answers one JSON line
describing it, then echoes. The "load balancer" in front is this script: it
writes a PROXY header on a TCP connection, then runs the TLS client on it.

  - to the upstream: v1 (TCP4), v2 with the AUTHORITY, ALPN and SSL TLVs
    (client flags, verify, version, cipher) for TLS 1.2 and 1.3, without SNI
    or ALPN; the header's bytes are not counted as the client's;
  - from a load balancer: v1 and v2 (TCP4, TCP6, with TLVs of its own, in
    pieces), LOCAL and UNKNOWN (the TCP peer stands), passed on as v2 or v1;
  - IPv6 end to end: a listener on [::1], the upstream on [::1], TCP6 headers;
  - refusals, each closed and counted by reason, while an established
    connection goes on working: garbage, a plain ClientHello, a bad v1
    address, a v1 line over 107 bytes, v2 with a UNIX/UDP family, a length
    above 2048 or too short for its addresses, a cut header, a header that
    never ends (timeout); a connection that sends nothing is no PROXY error.
"""
import json
import socket
import ssl
import struct
import time

import tglib
from tglib import SCALE, check, check_eq

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
FAMILIES = tglib.OUTCOME_FAMILIES + ("tlsgate_proxy_protocol_errors_total",
                                     "tlsgate_proxy_protocol_headers_total")


def tlv(t, v):
    return bytes([t]) + struct.pack(">H", len(v)) + v


def v2(cmd, fam, body):
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body


def v2_addrs(af, src, sport, dst, dport):
    return socket.inet_pton(af, src) + socket.inet_pton(af, dst) + struct.pack(">HH", sport, dport)


def read_line(s):
    out = b""
    while not out.endswith(b"\n"):
        d = s.recv(1)
        check(d, "connection ended before a full line (got %r)" % out)
        out += d
    return out


def round_trip(s, msg=b"ping"):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(len(msg) - len(got))
        check(d, "echo ended early")
        got += d
    check_eq(got, msg, "echo through the upstream")


def upstream_saw(s):
    """The upstream's description of the PROXY header it received, then one
    round trip of client bytes through the connection."""
    line = read_line(s)
    check(not line.startswith(b"PROXY-ERROR"), "the upstream refused the header: %r" % line)
    info = json.loads(line)
    round_trip(s)
    return info


def lb_connect(port, header, host="127.0.0.1", pieces=1, **tls):
    """A load balancer's connection: header (in `pieces` sends), then TLS."""
    raw = socket.create_connection((host, port), timeout=10 * SCALE)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    step = max(1, len(header) // pieces)
    for i in range(0, len(header), step):
        raw.sendall(header[i:i + step])
        if pieces > 1:
            time.sleep(0.02)  # invites separate segments; the result must not depend on it
    ctx = tglib.client_ctx(tls.get("version"), tls.get("alpn"))
    try:
        return ctx.wrap_socket(raw, server_hostname=tls.get("server_name", "a.test"))
    except BaseException:
        raw.close()
        raise


def local_port(s):
    return s.getsockname()[1]


def closed_by_peer(raw):
    """True once tlsgate has closed (EOF or reset); fails if it stays open."""
    raw.settimeout(10 * SCALE)
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise tglib.TestFailure("tlsgate kept the connection open")
    return True


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def main(t):
    check(have_ipv6(), "no IPv6 loopback (::1) on this machine")
    up4 = t.upstream("proxy")
    up6 = t.upstream("proxy", listen="[::1]:0")
    cert, key = t.cert("rsa", "a.test")
    tls = {"alpn": ["h2", "http/1.1"]}

    def lst(name, upstream, pp_out=None, pp_in=False, address="127.0.0.1:0", pp_timeout=None):
        extra = {"proxy_protocol": pp_out} if pp_out else None
        d = tglib.listener([(cert, key)], upstream, name=name, tls=tls, upstream_extra=extra,
                           address=address)
        if pp_in:
            d["proxy_protocol"] = True
            # Long where headers must arrive (a loaded machine may be slow to
            # send them); short where the timeout is under test.
            d["proxy_protocol_timeout"] = pp_timeout or "%gs" % (30 * SCALE)
        return d

    gw = t.gateway(tglib.gw_config([
        lst("out1", up4.addr, "v1"),
        lst("out2", up4.addr, "v2"),
        lst("in2", up4.addr, "v2", pp_in=True),
        lst("in1", up4.addr, "v1", pp_in=True),
        lst("in6", up6.addr, "v2", pp_in=True, address="[::1]:0"),
        lst("direct6", up6.addr, "v1", address="[::1]:0"),
        lst("short", up4.addr, "v2", pp_in=True, pp_timeout="%gs" % SCALE),
    ]))
    P = gw.ports
    pings = 0

    with t.case("v1 to the upstream: the client's address and port, the listener's"):
        with tglib.tls_connect(P["out1"]) as s:
            info = upstream_saw(s)
            pings += 1
            check_eq((info["version"], info["command"], info["family"]), (1, "PROXY", "TCP4"),
                     "header")
            check_eq((info["src"], info["sport"]), ("127.0.0.1", local_port(s)), "source")
            check_eq((info["dst"], info["dport"]), ("127.0.0.1", P["out1"]), "destination")

    for ver in ("1.2", "1.3"):
        with t.case("v2 to the upstream, TLS %s: addresses and the TLVs" % ver):
            ctx = tglib.client_ctx(ver, alpn=["h2"])
            with tglib.tls_connect(P["out2"], ctx) as s:
                info = upstream_saw(s)
                pings += 1
                cipher = s.cipher()[0]
                port = local_port(s)
            check_eq((info["version"], info["command"], info["family"]), (2, "PROXY", "TCP4"),
                     "header")
            check_eq((info["src"], info["sport"], info["dst"], info["dport"]),
                     ("127.0.0.1", port, "127.0.0.1", P["out2"]), "addresses")
            # AUTHORITY (0x02), ALPN (0x01), SSL (0x20), in that order.
            check_eq([tv[0] for tv in info["tlvs"]], [0x02, 0x01, 0x20], "TLV types")
            check_eq(info["authority"], "a.test", "AUTHORITY = SNI")
            check_eq(info["alpn"], "h2", "ALPN")
            ssl_tlv = info["ssl"]
            check_eq(ssl_tlv["client"], 0x01, "PP2_CLIENT_SSL, no client certificate")
            check_eq(ssl_tlv["verify"], 1, "verify: no certificate was verified")
            check_eq(ssl_tlv["sub"], [0x21, 0x23], "sub-TLVs VERSION, CIPHER")
            check_eq(ssl_tlv["version"], "TLSv" + ver, "PP2_SUBTYPE_SSL_VERSION")
            check_eq(ssl_tlv["cipher"], cipher, "PP2_SUBTYPE_SSL_CIPHER")

    with t.case("v2 to the upstream: no SNI, no ALPN -> no AUTHORITY, no ALPN TLV"):
        with tglib.tls_connect(P["out2"], server_name=None) as s:
            info = upstream_saw(s)
            pings += 1
        check_eq([tv[0] for tv in info["tlvs"]], [0x20], "TLV types")

    with t.case("the header is not counted as the client's bytes"):
        tglib.settle(gw)
        check_eq(gw.stats()("tlsgate_bytes_total", direction="client_to_upstream"), 4 * pings,
                 "client_to_upstream bytes = the pings only")

    before = tglib.snapshot(gw, FAMILIES)
    lb4 = v2_addrs(socket.AF_INET, "198.51.100.7", 4242, "203.0.113.9", 443)
    lb6 = v2_addrs(socket.AF_INET6, "2001:db8::7", 50000, "2001:db8::1", 443)
    with t.case("from a load balancer, v1 TCP4 -> v2 upstream"):
        with lb_connect(P["in2"], b"PROXY TCP4 198.51.100.7 203.0.113.9 4242 443\r\n") as s:
            info = upstream_saw(s)
        check_eq((info["version"], info["family"]), (2, "TCP4"), "header sent")
        check_eq((info["src"], info["sport"], info["dst"], info["dport"]),
                 ("198.51.100.7", 4242, "203.0.113.9", 443), "the balancer's client")
        check_eq(info["authority"], "a.test", "tlsgate's own SNI")

    with t.case("from a load balancer, v2 TCP6 with its own TLVs, in pieces"):
        hdr = v2(1, 0x21, lb6 + tlv(0x02, b"lb.example") + tlv(0xE0, b"custom") + tlv(0x04, b""))
        with lb_connect(P["in2"], hdr, pieces=3) as s:
            info = upstream_saw(s)
        check_eq((info["family"], info["src"], info["sport"], info["dst"], info["dport"]),
                 ("TCP6", "2001:db8::7", 50000, "2001:db8::1", 443), "the balancer's client")
        check_eq(info["authority"], "a.test", "the balancer's TLVs are not passed on")

    with t.case("from a load balancer, v2 TCP4 -> v1 upstream"):
        with lb_connect(P["in1"], v2(1, 0x11, lb4)) as s:
            info = upstream_saw(s)
        check_eq((info["version"], info["family"], info["src"], info["sport"]),
                 (1, "TCP4", "198.51.100.7", 4242), "v1 line with the balancer's client")

    for what, hdr in (("v2 LOCAL", v2(0, 0x00, b"")),
                      ("v2 LOCAL with an address block", v2(0, 0x11, lb4)),
                      ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n"),
                      ("v2 PROXY UNSPEC", v2(1, 0x00, b""))):
        with t.case("from a load balancer, %s: the TCP peer stands" % what):
            with lb_connect(P["in2"], hdr) as s:
                info = upstream_saw(s)
                port = local_port(s)
            check_eq((info["src"], info["sport"], info["dst"], info["dport"]),
                     ("127.0.0.1", port, "127.0.0.1", P["in2"]), "addresses")

    with t.case("headers accepted are counted by version"):
        tglib.expect_delta(gw, before, {
            "tlsgate_proxy_protocol_headers_total{version=1}": 2,
            "tlsgate_proxy_protocol_headers_total{version=2}": 5,
            "tlsgate_handshakes_total{result=ok}": 7,
            "tlsgate_upstream_connects_total{result=ok}": 7,
            "tlsgate_connections_closed_total{reason=normal}": 7,
        }, "accepted headers", families=FAMILIES)

    with t.case("IPv6 end to end: listener [::1], upstream [::1], TCP6 headers"):
        with lb_connect(P["in6"], b"PROXY TCP6 2001:db8::7 ::1 50000 443\r\n", host="::1") as s:
            info = upstream_saw(s)
        check_eq((info["family"], info["src"], info["sport"], info["dst"], info["dport"]),
                 ("TCP6", "2001:db8::7", 50000, "::1", 443), "v2 TCP6 from a v1 TCP6 line")
        with lb_connect(P["in6"], v2(0, 0x00, b""), host="::1") as s:
            info = upstream_saw(s)
            port = local_port(s)
        check_eq((info["family"], info["src"], info["sport"], info["dst"], info["dport"]),
                 ("TCP6", "::1", port, "::1", P["in6"]), "LOCAL: the IPv6 peer")
        with tglib.tls_connect(P["direct6"], host="::1") as s:
            info = upstream_saw(s)
            port = local_port(s)
        check_eq(info["version"], 1, "v1")
        check_eq((info["family"], info["src"], info["sport"], info["dst"], info["dport"]),
                 ("TCP6", "::1", port, "::1", P["direct6"]), "PROXY TCP6 line")

    # ---- refusals ----
    tglib.settle(gw)
    good = lb_connect(P["in2"], b"PROXY TCP4 198.51.100.8 203.0.113.9 4243 443\r\n")
    upstream_saw(good)

    def refused(what, reason, send=None, shut=False, tls_hello=False, port=P["in2"]):
        with t.case("refused, %s: closed, counted as %s" % (what, reason or "client_closed")):
            before = tglib.snapshot(gw, FAMILIES)
            if tls_hello:
                try:
                    with tglib.tls_connect(port, timeout=10):
                        pass
                    raise tglib.TestFailure("TLS without a PROXY header succeeded")
                except (OSError, ssl.SSLError):
                    pass
            else:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE)
                if send:
                    raw.sendall(send)
                if shut:
                    raw.shutdown(socket.SHUT_WR)
                closed_by_peer(raw)
                raw.close()
            want = {"tlsgate_connections_closed_total{reason=proxy_protocol}": 1}
            if reason is None:
                want = {"tlsgate_connections_closed_total{reason=handshake_failed}": 1,
                        "tlsgate_handshakes_total{result=client_closed}": 1}
            else:
                want["tlsgate_proxy_protocol_errors_total{reason=%s}" % reason] = 1
            tglib.expect_delta(gw, before, want, what, timeout=10, families=FAMILIES)

    refused("garbage", "not_proxy", send=b"GET / HTTP/1.0\r\n\r\n")
    refused("a plain TLS ClientHello", "not_proxy", tls_hello=True)
    refused("v1 with a bad address", "malformed",
            send=b"PROXY TCP4 198.51.100.7 203.0.113.999 1 2\r\n")
    refused("v1 with a leading zero in a port", "malformed",
            send=b"PROXY TCP4 198.51.100.7 203.0.113.9 01 2\r\n")
    refused("a v1 line over 107 bytes", "malformed", send=b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n")
    refused("v2 with the UNIX family", "malformed", send=v2(1, 0x31, b"\0" * 216))
    refused("v2 with the UDP family", "malformed", send=v2(1, 0x12, lb4))
    refused("v2 with a length above 2048", "malformed",
            send=SIG + bytes([0x21, 0x11]) + struct.pack(">H", 2049))
    refused("v2 with a length shorter than its addresses", "malformed",
            send=v2(1, 0x11, lb4[:8]))
    refused("v2 with a TLV longer than the header", "malformed",
            send=v2(1, 0x11, lb4 + b"\x02\x00\x09abc"))
    refused("v2 with version 1", "malformed", send=SIG + bytes([0x11, 0x11, 0, 12]) + lb4)
    refused("a cut header", "truncated", send=b"PROXY TCP4 198.51.100.7 ", shut=True)
    refused("a header that never ends", "timeout", send=b"PROXY TCP4 198.51.100.7 ",
            port=P["short"])
    refused("half a v2 header that never ends", "timeout", send=SIG[:7], port=P["short"])
    refused("nothing at all (a TCP health check), not a PROXY error", None, shut=True)

    with t.case("the established connection still works, and new ones"):
        round_trip(good, b"still here")
        good.close()
        with lb_connect(P["in2"], v2(1, 0x11, lb4)) as s:
            info = upstream_saw(s)
        check_eq(info["src"], "198.51.100.7", "after the refusals")
        tglib.settle(gw)

    gw.stop_ok()


tglib.run(main, timeout=180)
