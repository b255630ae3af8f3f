#!/usr/bin/env python3
"""The access log where a connection's addresses are not simply its socket's:
  - behind a load balancer (listeners[].proxy_protocol: true): `client` is the
    source of the PROXY header (v1 TCP4, v2 TCP6), `peer` the balancer's TCP
    address; a header without addresses (v1 UNKNOWN, v2 LOCAL) leaves the
    peer as the client; a refused header is PH, a late one PT, a balancer's
    TCP health check (nothing sent) HC; PH + PT lines = closed{proxy_protocol};
  - an upstream cluster (a name with two addresses from dnsmasq, one of them
    dead): every line names the endpoint actually used (its address, and the
    entry it came from as upstream_host) and how many endpoints were tried;
    the retries in the lines add up to tlsgate_upstream_connect_retries_total;
    a cluster whose endpoints all refuse is UF with the last one tried; a
    name that never resolved is NH (no upstream, no attempt);
  - IPv6 end to end: client, peer and upstream as [::1]:port in text and
    "::1" in JSON.
"""
import socket
import struct

import tg_alog
import tglib
import tgcluster as tc
from tg_alog import parse_json, parse_text
from tglib import SCALE, check, check_eq

REQ = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def lb_connect(port, header, host="127.0.0.1"):
    """A load balancer's connection: the PROXY header, then TLS; returns
    (TLS socket, the balancer's local port)."""
    raw = socket.create_connection((host, port), timeout=10 * SCALE)
    raw.sendall(header)
    local = raw.getsockname()[1]
    try:
        return tglib.client_ctx().wrap_socket(raw, server_hostname="a.test"), local
    except BaseException:
        raw.close()
        raise


def request(s):
    with s:
        s.sendall(REQ)
        data = tglib.recv_all(s)
    check(data.startswith(b"HTTP/1.1 200"), "response %r" % data[:40])


def v2_tcp6(src, sport, dst, dport):
    body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    body += struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])


def closed_by_peer(raw):
    raw.settimeout(10 * SCALE)
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass
    raw.close()


def by_term(recs, key="term"):
    out = {}
    for d in recs:
        out.setdefault(d[key] if isinstance(d[key], str) else d[key].decode(), []).append(d)
    return out


def proxy_case(t, up):
    pair = t.cert("rsa", "a.test")

    def L(name, timeout):
        d = tglib.listener([pair], up.addr, name=name)
        d["proxy_protocol"] = True
        d["proxy_protocol_timeout"] = timeout
        return d
    path = t.path("access-pp.log")
    # Long where headers must arrive, short where the timeout is the case.
    cfg = tglib.gw_config([L("lb", "%gs" % (30 * SCALE)), L("lbfast", "1s")])
    cfg["access_log"] = {"path": path}
    gw = t.gateway(cfg)
    P = gw.ports
    s, lb1 = lb_connect(P["lb"], b"PROXY TCP4 198.51.100.7 203.0.113.9 4242 443\r\n")
    request(s)
    s, lb2 = lb_connect(P["lb"], v2_tcp6("2001:db8::7", 50000, "2001:db8::1", 443))
    request(s)
    s, lb3 = lb_connect(P["lb"], b"PROXY UNKNOWN\r\n")
    request(s)
    s, lb4 = lb_connect(P["lb"], V2_LOCAL)
    request(s)
    # Refused: not a PROXY header at all (a client speaking TLS directly).
    raw = socket.create_connection(("127.0.0.1", P["lb"]), timeout=10 * SCALE)
    lb5 = raw.getsockname()[1]
    raw.sendall(tglib.client_hello())
    closed_by_peer(raw)
    # Late: a header that never ends.
    raw = socket.create_connection(("127.0.0.1", P["lbfast"]), timeout=10 * SCALE)
    raw.sendall(b"PROXY TCP4 198.51.100.7 ")
    closed_by_peer(raw)
    # A TCP health check: connect, close, nothing sent. Nothing waits for
    # tlsgate here: wait until it has accepted it before settling.
    socket.create_connection(("127.0.0.1", P["lb"]), timeout=10 * SCALE).close()
    tglib.wait_until(lambda: gw.stats()("tlsgate_connections_accepted_total") == 7, 10,
                     "the health check accepted")
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    recs = [parse_text(ln) for ln in tg_alog.read_lines(path)]
    check_eq((len(recs), a["ended"], a["full"]), (7, 7, 0), "one line per connection")
    T = by_term(recs)
    check_eq(sorted((k, len(v)) for k, v in T.items()),
             [("--", 4), ("HC", 1), ("PH", 1), ("PT", 1)], "codes")
    ok = {d["peer"]: d for d in T["--"]}
    want = (("127.0.0.1:%d" % lb1, "198.51.100.7:4242"),
            ("127.0.0.1:%d" % lb2, "[2001:db8::7]:50000"),
            ("127.0.0.1:%d" % lb3, "127.0.0.1:%d" % lb3),
            ("127.0.0.1:%d" % lb4, "127.0.0.1:%d" % lb4))
    for peer, client in want:
        d = ok.get(peer.encode())
        check(d is not None, "a line with peer %s: %r" % (peer, list(ok)))
        check_eq((d["client"], d["listener"], d["sni"], d["upstream"]),
                 (client.encode(), b"lb", b"a.test", up.addr.encode()), "line of peer %s" % peer)
    d = T["PH"][0]
    check_eq((d["client"], d["peer"], d["tls"], d["handshake_ms"], d["upstream"], d["attempts"]),
             (b"127.0.0.1:%d" % lb5, b"127.0.0.1:%d" % lb5, None, None, None, b"0"),
             "PH line: nothing but the balancer known")
    d = T["PT"][0]
    check_eq((d["listener"], d["tls"]), (b"lbfast", None), "PT line")
    check(float(d["duration_ms"]) >= 900, "PT after about 1s: %r" % d["duration_ms"])
    st = gw.stats()
    check_eq(len(T["PH"]) + len(T["PT"]),
             st("tlsgate_connections_closed_total", reason="proxy_protocol"),
             "PH + PT lines = closed{proxy_protocol}")
    check_eq(len(T["PT"]), st("tlsgate_proxy_protocol_errors_total", reason="timeout"),
             "PT lines = proxy_protocol_errors{timeout}")
    gw.stop_ok()


def cluster_case(t):
    pair = t.cert("rsa", "a.test")
    live = t.upstream("http", listen="127.0.0.2:0")
    port = int(live.addr.rsplit(":", 1)[1])
    # web.test: a live address and one where nothing listens (refused).
    dns = tc.DnsMasq(t, "127.0.0.2 web.test\n127.0.0.3 web.test\n")
    dead1, dead2 = socket.socket(), socket.socket()
    dead1.bind(("127.0.0.1", 0))  # bound, not listening: connect -> refused
    dead2.bind(("127.0.0.1", 0))
    d1, d2 = ["127.0.0.1:%d" % d.getsockname()[1] for d in (dead1, dead2)]

    def L(name, endpoints, **extra):
        u = {"endpoints": [{"address": e} for e in endpoints], "connect_timeout": "5s"}
        u.update(extra)
        return tglib.listener([pair], None, name=name, upstream_extra=u)
    path = t.path("access-cluster.json")
    cfg = tglib.gw_config([
        # No ejection (0): the dead address stays in the rotation, so both
        # "first try" and "retry" lines occur.
        L("web", ["web.test:%d" % port], outlier_detection={"consecutive_failures": 0}),
        L("dead", [d1, d2], outlier_detection={"consecutive_failures": 0}),
        L("never", ["never.test:%d" % port]),
    ], extra={"dns": {"resolvers": [dns.addr], "query_timeout": "500ms"}})
    cfg["access_log"] = {"path": path, "format": "json"}
    gw = t.gateway(cfg)
    P = gw.ports
    n = 8
    for _ in range(n):
        request(tglib.tls_connect(P["web"]))
    for name in ("dead", "never"):
        check_eq(tc.raw_get(P[name]), b"", "%s: no response" % name)
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    recs = [parse_json(ln) for ln in tg_alog.read_lines(path)]
    check_eq((len(recs), a["ended"]), (n + 2, n + 2), "one line per connection")
    L_ = {}
    for d in recs:
        L_.setdefault(d["listener"], []).append(d)
    web = L_["web"]
    check_eq(len(web), n, "web lines")
    for d in web:
        check_eq((d["term"], d["upstream"], d["upstream_host"]),
                 ("--", live.addr, "web.test:%d" % port), "the endpoint actually used")
        check(d["attempts"] in (1, 2) and d["connect_ms"] is not None, "attempts %r" % d)
    st = gw.stats()
    retries = st("tlsgate_upstream_connect_retries_total")
    check_eq(sum(d["attempts"] - 1 for d in web) + 1, retries,
             "retries in the lines (+1 of the dead cluster) = retries_total")
    check(any(d["attempts"] == 2 for d in web), "round robin put the dead address first "
          "at least once in %d connections: %r" % (n, [d["attempts"] for d in web]))
    d = L_["dead"][0]
    check_eq((d["term"], d["attempts"], d["bytes_in"], d["bytes_out"]), ("UF", 2, 0, 0),
             "every endpoint refused")
    check(d["upstream"] in (d1, d2) and d["upstream_host"] == d["upstream"],
          "the last endpoint tried: %r" % d)
    check(d["connect_ms"] is not None and d["handshake_ms"] is not None, "UF times %r" % d)
    d = L_["never"][0]
    check_eq((d["term"], d["upstream"], d["upstream_host"], d["attempts"], d["connect_ms"]),
             ("NH", None, None, 0, None), "no endpoint to try")
    check(d["tls"] == "TLSv1.3" and d["handshake_ms"] is not None, "NH after a handshake %r" % d)
    check_eq(len(L_["never"]), st("tlsgate_connections_closed_total",
                                  reason="no_healthy_upstream"), "NH lines = counter")
    gw.stop_ok()
    dead1.close()
    dead2.close()


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def ipv6_case(t):
    check(have_ipv6(), "no IPv6 loopback (::1) on this machine")
    pair = t.cert("rsa", "a.test")
    up6 = t.upstream("http", listen="[::1]:0")
    path = t.path("access-v6.log")
    cfg = tglib.gw_config([tglib.listener([pair], up6.addr, name="v6", address="[::1]:0")])
    cfg["access_log"] = {"path": path, "format": "json"}
    gw = t.gateway(cfg)
    ctx = tglib.client_ctx()
    raw = socket.create_connection(("::1", gw.port), timeout=10 * SCALE)
    local = raw.getsockname()[1]
    request(ctx.wrap_socket(raw, server_hostname="a.test"))
    tglib.settle(gw)
    d = parse_json(tg_alog.wait_lines(path, 1)[0])
    check_eq((d["client_addr"], d["client_port"], d["peer_addr"], d["peer_port"], d["upstream"],
              d["term"]), ("::1", local, "::1", local, up6.addr, "--"), "IPv6 line")
    gw.stop_ok()


def main(t):
    up = t.upstream("http")
    with t.case("PROXY listener: client from the header, peer the balancer; PH, PT, HC"):
        proxy_case(t, up)
    with t.case("cluster: the endpoint actually used, attempts, UF after every endpoint, NH"):
        cluster_case(t)
    with t.case("IPv6: client, peer and upstream on [::1]"):
        ipv6_case(t)


if __name__ == "__main__":
    tglib.run(main, timeout=180)
