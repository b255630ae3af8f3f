#!/usr/bin/env python3
"""Reload and the upstream side: clusters and the PROXY protocol.

Two workers; upstream host names answered by dnsmasq (dns.resolvers), every
one of them 127.0.0.1, looked up again every 100 ms. Three listeners:
`web` (tlsgate bench --serve upstreams, told apart by their response size),
`hc` (Python echo upstreams that count every connection, so the active
health check's probes, every 100 ms, are seen) and `pp` (the PROXY protocol;
a Python upstream that parses the header it gets).

  - endpoints changed, RELOADS times, under `tlsgate bench` (a new
    connection per call): each reload gives `web` and `hc` a new name on a
    new upstream; no call fails (the switch waits for the new names' first
    answers); new connections go to the new upstream only; keep-alive and
    echo connections opened before the first reload still pass bytes to
    the old upstreams; the retired clusters' health checks and look-ups
    stop although connections of their generation are still open; those
    generations are freed once the connections close;
  - an unchanged upstream (only a certificate changes): the cluster is
    kept: no first look-up, endpoint counters go on, probes go on;
  - the dns block changed: clusters with names are rebuilt;
  - listener.proxy_protocol turned on, then off, by reloads (and
    upstream.proxy_protocol v2 -> v1): a connection opened before keeps
    working; new connections need the header, or not, at once; the upstream
    gets the header the generation says.

Waits are bounded polls of /stats, of the logs and of what the upstreams
saw. "Stopped" is judged against the running clusters: while the current
upstream gets 5 more probes and its name 5 more look-ups, a retired one gets
at most the one in flight when it was retired.
"""
import json
import os
import re
import signal
import socket
import ssl

import tglib
import tg_reload as R
import tgcluster as tc
from tglib import SCALE, check, check_eq, wait_until

RELOADS = int(os.environ.get("TG_RELOADS") or (3 if tglib.VALGRIND else 6))
CONNS = 4 if tglib.VALGRIND else 16


def http_get(s):
    """One keep-alive GET on an open TLS socket; the body."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        check(d, "the keep-alive connection closed (got %r)" % data[:80])
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    check(head.startswith(b"HTTP/1.1 200") and m, "bad response %r" % head[:80])
    while len(body) < int(m.group(1)):
        d = s.recv(4096)
        check(d, "the keep-alive connection closed mid-body")
        body += d
    return body


def get_size(port):
    """Body size of one GET on a new connection (tells the upstream)."""
    st, body, _ = tglib.http_request(port)
    check_eq(st, 200, "HTTP status")
    return len(body)


def echo(s, msg):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(len(msg) - len(got))
        check(d, "the echo connection closed")
        got += d
    check_eq(got, msg, "echo")


def probes(up):
    """Connections an echo upstream saw that carried no byte: health probes."""
    with up.lock:
        return sum(1 for c in up.conns if c.closed.is_set() and not c.received)


def main(t):
    pair = t.cert("ec", "a.test")
    names = ["n%d.test" % i for i in range(RELOADS + 1)]
    dns = tc.DnsMasq(t, "".join("127.0.0.1 %s\n" % n for n in names))
    web = []  # (addr, response size) of tlsgate bench --serve
    for i in range(RELOADS + 1):
        size = 5 + i
        p = t.spawn("web%d" % i, R.tlsgate_cmd("bench", "--serve", "127.0.0.1:0", "--quiet",
                                                "--response-size", str(size)))
        m = wait_until(lambda: re.search(r"serving on \S+:(\d+)", p.log()), 10, "upstream web%d" % i)
        web.append((int(m.group(1)), size))
    hc = [t.upstream("echo") for _ in range(RELOADS + 1)]
    pp_up = t.upstream("proxy")
    certs = {"n": 0}

    def new_pair():
        certs["n"] += 1
        c, k, serial = R.new_cert(t, t.path("certs"), "c%d" % certs["n"])
        return (c, k), serial

    def config(gen, pair, dns_timeout="1s", pp_in=False, pp_out="v2"):
        """Generation `gen`'s upstreams: names[gen] on web[gen] and hc[gen]."""
        def lst(name, upstream, extra=None):
            return tglib.listener([pair], None, name=name,
                                  upstream_extra=dict({"endpoints": [{"address": upstream}],
                                                       "dns_refresh_rate": "100ms",
                                                       "connect_timeout": "5s"}, **(extra or {})))
        pp = tglib.listener([pair], pp_up.addr, name="pp", upstream_extra={"proxy_protocol": pp_out})
        if pp_in:
            pp["proxy_protocol"] = True
            pp["proxy_protocol_timeout"] = "%gs" % (30 * SCALE)
        return tglib.gw_config([
            lst("web", "%s:%d" % (names[gen], web[gen][0])),
            lst("hc", "%s:%d" % (names[gen], hc[gen].port),
                {"health_check": {"interval": "100ms", "timeout": "2s"}}),
            pp,
        ], concurrency=2, extra={"dns": {"resolvers": [dns.addr], "query_timeout": dns_timeout},
                                 "reload": {"watch": False}})

    def reload(cfg, what):
        before = R.reloads(gw)
        with open(gw.cfg_path + ".tmp", "w") as f:
            f.write(tglib.to_yaml(cfg) + "\n")
        os.rename(gw.cfg_path + ".tmp", gw.cfg_path)
        gw.signal(signal.SIGHUP)
        R.wait_reload(gw, before, what, timeout=60)

    def cluster_line(name):
        """The last log line describing listener `name`."""
        lines = [ln for ln in gw.log().splitlines() if re.search(r"listener %s: (keeps|listening)"
                                                                  % name, ln)]
        check(lines, "no line for listener %s" % name)
        return lines[-1]

    def wait_running(gen, n=5):
        """The current clusters run: generation gen's hc upstream gets n more
        probes and its name n more look-ups (dnsmasq's log)."""
        p0, q0 = probes(hc[gen]), dns.queries(names[gen])
        wait_until(lambda: probes(hc[gen]) >= p0 + n and dns.queries(names[gen]) >= q0 + n,
                   30 * SCALE, "the current clusters' probes and look-ups to go on")

    pair0, _ = new_pair()
    gw = t.gateway(config(0, pair0))
    port = gw.ports["web"]
    hc_port = gw.ports["hc"]
    pp_port = gw.ports["pp"]
    gens = lambda: gw.stats()("tlsgate_config_generations_active")  # noqa: E731

    with t.case("generation 1 serves; connections that will outlive the reloads"):
        check_eq(get_size(port), web[0][1], "web goes to web0")
        old_web = tglib.tls_connect(port)
        check_eq(len(http_get(old_web)), web[0][1], "keep-alive connection to web0")
        old_hc = tglib.tls_connect(hc_port)
        echo(old_hc, b"before")
        check_eq(len([c for c in hc[0].conns if c.received]), 1, "the echo connection is on hc0")
        wait_running(0)

    jpath = t.path("bench.json")
    bench = t.spawn("bench", R.tlsgate_cmd(
        "bench", "-c", str(CONNS), "--keepalive=false", "-t", "0", "-k", "--quiet",
        "--timeout", "%ds" % int(30 * SCALE), "--json", jpath, "https://127.0.0.1:%d/" % port))
    wait_until(lambda: gw.stats()("tlsgate_handshakes_total", result="ok") >= 30, 30 * SCALE,
               "bench to be under way")

    for gen in range(1, RELOADS + 1):
        with t.case("reload %d/%d: web and hc to %s, on new upstreams" % (gen, RELOADS, names[gen])):
            reload(config(gen, pair0), "endpoints changed")
            for name, up in (("web", web[gen][0]), ("hc", hc[gen].port)):
                check(re.search(r"upstream %s:%d \(new cluster\)" % (re.escape(names[gen]), up),
                                cluster_line(name)), "%s: a new cluster" % name)
            check_eq(tc.endpoints(gw.stats(), "web"), ["127.0.0.1:%d" % web[gen][0]],
                     "web's endpoints now")
            for _ in range(3):
                check_eq(get_size(port), web[gen][1], "a new connection goes to web%d" % gen)
            check(bench.alive(), "bench is still running")

    with t.case("the connections opened before the reloads still pass bytes"):
        check_eq(len(http_get(old_web)), web[0][1], "keep-alive connection: still web0")
        echo(old_hc, b"after %d reloads" % RELOADS)
        check_eq(len([c for c in hc[0].conns if c.received]), 1, "still one echo connection on hc0")
        check(gens() >= 2, "the first generation lives on with them")

    with t.case("the retired clusters' health checks and look-ups stopped"):
        # Let what was in flight at the last retirement land, then count.
        wait_running(RELOADS, 2)
        seen = [(probes(hc[g]), dns.queries(names[g])) for g in range(RELOADS)]
        wait_running(RELOADS)
        for g in range(RELOADS):
            last = g == RELOADS - 1  # retired at the last reload: one may have been in flight
            p, q = probes(hc[g]), dns.queries(names[g])
            check(p <= seen[g][0] + (1 if last else 0),
                  "hc%d (generation %d) still probed: %d -> %d" % (g, g + 1, seen[g][0], p))
            check(q <= seen[g][1] + (2 if last else 0),
                  "%s still looked up: %d -> %d" % (names[g], seen[g][1], q))

    with t.case("bench: no failed call across the reloads"):
        bench.signal(signal.SIGINT)
        check_eq(bench.wait(60 * SCALE), 0, "bench exit status")
        with open(jpath) as f:
            j = json.load(f)
        print("    bench: %d calls, %d ok, %d errors, during %d reloads of the upstream"
              % (j["calls"], j["ok"], j["errors"]["total"], RELOADS), flush=True)
        if j["errors"]["total"] != 0:
            print("    first errors: %r" % (j.get("first_errors"),))
        check_eq(j["errors"]["total"], 0, "failed calls")
        check_eq(j["ok"], j["calls"], "ok calls")

    with t.case("the old generations go with their last connections"):
        old_web.close()
        old_hc.close()
        wait_until(lambda: gens() == 1, 30 * SCALE, "every old generation to be freed")

    cur = RELOADS
    with t.case("a reload that leaves the upstream alone keeps the cluster"):
        st = gw.stats()
        conns_before = tc.endpoint(st, "web", "127.0.0.1:%d" % web[cur][0], "connections_total")
        check(conns_before > 0, "web's endpoint counted connections")
        firsts = gw.log().count("waiting for the first answers")
        pair1, serial1 = new_pair()
        reload(config(cur, pair1), "certificate only")
        check_eq(R.served_serial(t, port), serial1, "the new certificate")
        for name in ("web", "hc"):
            check(cluster_line(name).endswith("(cluster unchanged)"), "%s: cluster kept: %r"
                  % (name, cluster_line(name)))
        check_eq(gw.log().count("waiting for the first answers"), firsts, "no first look-up")
        check_eq(get_size(port), web[cur][1], "still web%d" % cur)
        check(tc.endpoint(gw.stats(), "web", "127.0.0.1:%d" % web[cur][0], "connections_total")
              > conns_before, "the endpoint's counter goes on from where it was")
        wait_running(cur)

    with t.case("the dns block changed: clusters with names are rebuilt"):
        reload(config(cur, pair1, dns_timeout="2s"), "dns changed")
        for name in ("web", "hc"):
            check(cluster_line(name).endswith("(new cluster)"), "%s: %r" % (name, cluster_line(name)))
        check_eq(get_size(port), web[cur][1], "still web%d" % cur)
        wait_running(cur)

    def pp_info(s):
        """The upstream's description of the header it got, then a round trip."""
        line = b""
        while not line.endswith(b"\n"):
            d = s.recv(1)
            check(d, "closed before the upstream's line (%r)" % line)
            line += d
        check(not line.startswith(b"PROXY-ERROR"), "the upstream refused the header: %r" % line)
        echo(s, b"ping")
        return json.loads(line)

    def lb_connect(header):
        raw = socket.create_connection(("127.0.0.1", pp_port), timeout=10 * SCALE)
        raw.sendall(header)
        try:
            return tglib.client_ctx().wrap_socket(raw, server_hostname="a.test")
        except BaseException:
            raw.close()
            raise

    def pp_errors():
        return gw.stats().get("tlsgate_proxy_protocol_errors_total", reason="not_proxy") or 0

    with t.case("listener.proxy_protocol turned on by a reload"):
        before = tglib.tls_connect(pp_port)
        info = pp_info(before)
        check_eq((info["version"], info["src"]), (2, "127.0.0.1"), "v2 with the TCP peer")
        reload(config(cur, pair1, dns_timeout="2s", pp_in=True, pp_out="v1"), "proxy_protocol on")
        check("PROXY protocol: required from the load balancer, v1 to the upstream"
              in cluster_line("pp"), "logged: %r" % cluster_line("pp"))
        s = lb_connect(b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 443\r\n")
        info = pp_info(s)
        check_eq((info["version"], info["src"], info["sport"]), (1, "192.0.2.7", 4242),
                 "the upstream gets v1 with the load balancer's client")
        s.close()
        errs = pp_errors()
        try:
            tglib.tls_connect(pp_port).close()
            refused = False
        except (ssl.SSLError, OSError):
            refused = True
        check(refused, "TLS without a PROXY header is refused now")
        wait_until(lambda: pp_errors() == errs + 1, 10 * SCALE, "the refusal counted (not_proxy)")
        echo(before, b"opened before the reload")

    with t.case("listener.proxy_protocol turned off again"):
        reload(config(cur, pair1, dns_timeout="2s"), "proxy_protocol off")
        s = tglib.tls_connect(pp_port)
        info = pp_info(s)
        check_eq((info["version"], info["src"]), (2, "127.0.0.1"), "plain TLS again, v2 upstream")
        s.close()
        echo(before, b"and after turning it off")
        before.close()

    with t.case("SIGTERM: exit 0"):
        gw.stop_ok()


tglib.run(main, timeout=300)
