#!/usr/bin/env python3
"""Upstream host names resolved by tlsgate (c-ares) against a real DNS server:
dnsmasq on a loopback port (dns.resolvers), answering from a hosts file the
test rewrites and makes it re-read with SIGHUP. Two workers.
  - a name with two addresses: both endpoints get connections;
  - a name that moves to another address: after the refresh
    (dns_refresh_rate: 200ms) new connections go to the new one only, and
    the old endpoint leaves the cluster;
  - a name that stops resolving: the last good address is kept and serves,
    the failed look-ups are counted;
  - a name that never resolved: no endpoint, connections closed at once,
    counted as no_healthy_upstream;
  - a name with only an AAAA record ([::1]), an absolute name (final dot)
    and `localhost` from /etc/hosts;
  - re-resolution after a connect failure: with a 60 s refresh, a name whose
    address has no server is looked up again soon after a connect to it
    fails, and the next connection reaches the new address.
Every wait is a bounded poll of /stats or of dnsmasq's log.
"""
import tglib
import tgcluster as tc
from tglib import check, check_eq, wait_until


def main(t):
    pair = t.cert("rsa", "a.test")
    port, ups = tc.serve_same_port(t, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "[::1]"])
    local = tc.serve(t, "127.0.0.1:0", "upstream-localhost")
    dns = tc.DnsMasq(t, "127.0.0.2 two.test\n127.0.0.3 two.test\n"
                        "127.0.0.2 move.test\n"
                        "127.0.0.4 gone.test\n"
                        "::1 six.test\n"
                        "127.0.0.9 early.test\n")
    ep = lambda ip: ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)  # noqa: E731

    def L(name, host, p=port, **extra):
        u = {"endpoints": [{"address": "%s:%d" % (host, p)}], "dns_refresh_rate": "200ms",
             "connect_timeout": "2s"}
        u.update(extra)
        return tglib.listener([pair], None, "software", name=name, upstream_extra=u)

    gw = t.gateway(tglib.gw_config([
        L("two", "two.test"),
        L("fqdn", "two.test."),
        L("move", "move.test"),
        L("gone", "gone.test"),
        L("never", "never.test"),
        L("six", "six.test"),
        L("etchosts", "localhost", local.port),
        L("early", "early.test", dns_refresh_rate="60s"),
    ], concurrency=2, extra={"dns": {"resolvers": [dns.addr], "query_timeout": "500ms"}}))

    def eps(listener):
        return tc.endpoints(gw.stats(), listener)

    with t.case("ready only after every name's first answer; the sets it found"):
        check_eq(eps("two"), sorted([ep("127.0.0.2"), ep("127.0.0.3")]), "two.test")
        check_eq(eps("fqdn"), eps("two"), "two.test. (absolute)")
        check_eq(eps("move"), [ep("127.0.0.2")], "move.test")
        check_eq(eps("six"), [ep("::1")], "six.test (AAAA only)")
        check_eq(eps("never"), [], "never.test")
        check("127.0.0.1:%d" % local.port in eps("etchosts"),
              "localhost from /etc/hosts: %r" % eps("etchosts"))

    with t.case("a name with two addresses: both used"):
        r = tc.bench(t, gw.ports["two"], calls=40, conns=2)
        check_eq(tc.errors(r), {}, "failed calls")
        st = gw.stats()
        for ip in ("127.0.0.2", "127.0.0.3"):
            n = tc.endpoint(st, "two", ep(ip), "connections_total")
            check(n > 0, "%s got no connection (%r)" % (ip, n))
        check_eq(sum(tc.endpoint(st, "two", ep(ip), "connections_total")
                     for ip in ("127.0.0.2", "127.0.0.3")), 40, "connections in all")

    with t.case("AAAA only and /etc/hosts names serve"):
        for name in ("six", "etchosts"):
            r = tc.bench(t, gw.ports[name], calls=10, conns=2)
            check_eq(tc.errors(r), {}, "%s: failed calls" % name)
            check_eq(r["ok"], 10, "%s: calls ok" % name)

    with t.case("a name that moves: new connections follow after the refresh"):
        r = tc.bench(t, gw.ports["move"], calls=10, conns=2)
        check_eq(tc.errors(r), {}, "failed calls before the move")
        check_eq(tc.endpoint(gw.stats(), "move", ep("127.0.0.2"), "connections_total"), 10,
                 "connections to the old address")
        dns.set_hosts("127.0.0.2 two.test\n127.0.0.3 two.test\n"
                      "127.0.0.3 move.test\n"
                      "127.0.0.4 gone.test\n"
                      "::1 six.test\n"
                      "127.0.0.9 early.test\n")
        wait_until(lambda: eps("move") == [ep("127.0.0.3")], 10, "move.test to follow the DNS")
        r = tc.bench(t, gw.ports["move"], calls=10, conns=2)
        check_eq(tc.errors(r), {}, "failed calls after the move")
        check_eq(tc.endpoint(gw.stats(), "move", ep("127.0.0.3"), "connections_total"), 10,
                 "connections to the new address")
        check("upstream move: 1 endpoint(s): %s" % ep("127.0.0.3") in gw.log(),
              "the change is logged")

    with t.case("a name that stops resolving keeps its last good address"):
        failed0 = gw.stats()("tlsgate_upstream_dns_resolutions_total", listener="gone",
                             result="failed")
        dns.set_hosts("127.0.0.2 two.test\n127.0.0.3 two.test\n"
                      "127.0.0.3 move.test\n"
                      "::1 six.test\n"
                      "127.0.0.9 early.test\n")
        wait_until(lambda: gw.stats()("tlsgate_upstream_dns_resolutions_total", listener="gone",
                                      result="failed") >= failed0 + 2, 10,
                   "failed look-ups of gone.test to be counted")
        check_eq(eps("gone"), [ep("127.0.0.4")], "endpoints kept")
        r = tc.bench(t, gw.ports["gone"], calls=10, conns=2)
        check_eq(tc.errors(r), {}, "failed calls")
        check_eq(tc.endpoint(gw.stats(), "gone", ep("127.0.0.4"), "connections_total"), 10,
                 "connections to the kept address")
        check("cannot resolve gone.test" in gw.log() and "keeping its last 1 address" in gw.log(),
              "the failure is logged")

    with t.case("a name that never resolved: no endpoint, closed at once, counted"):
        before = tglib.snapshot(gw)
        check_eq(tc.raw_get(gw.ports["never"]), b"", "no response")
        tglib.expect_delta(gw, before, {
            "tlsgate_handshakes_total{result=ok}": 1,
            "tlsgate_connections_closed_total{reason=no_healthy_upstream}": 1},
            "no endpoint")
        check(gw.stats()("tlsgate_upstream_dns_resolutions_total", listener="never",
                         result="failed") >= 1, "failed look-ups counted")

    with t.case("a connect failure brings the next look-up forward"):
        # early.test points at an address where nothing listens; the DNS
        # moves it, but the 60 s refresh would not notice for a minute.
        dns.set_hosts("127.0.0.2 two.test\n127.0.0.3 two.test\n"
                      "127.0.0.3 move.test\n"
                      "::1 six.test\n"
                      "127.0.0.2 early.test\n")
        asked = dns.queries("early.test")
        check_eq(eps("early"), [ep("127.0.0.9")], "the old address")
        check_eq(tc.raw_get(gw.ports["early"]), b"", "refused: no response")
        wait_until(lambda: eps("early") == [ep("127.0.0.2")], 10,
                   "early.test to be looked up again after the failure")
        check(dns.queries("early.test") > asked, "dnsmasq saw the new look-up")
        check(tglib.still_serving(gw, port=gw.ports["early"]).startswith(b"HTTP/1.1 200"),
              "served at the new address")

    with t.case("still serving, nothing left open"):
        tglib.settle(gw)
    gw.stop_ok()


tglib.run(main, timeout=180)
