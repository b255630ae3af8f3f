"""tgcluster: helpers of the upstream-cluster integration tests, on top of
tglib: a real DNS server (Debian's dnsmasq on a loopback port, answering
from a hosts file the test rewrites), `tlsgate bench` runs, upstream
processes on chosen addresses, and the per-endpoint series of /stats.

    dns = DnsMasq(t, "127.0.0.2 web.test\\n")   # TestSkip if dnsmasq is missing
    dns.set_hosts("127.0.0.3 web.test\\n")      # rewrite, SIGHUP, wait until re-read
    r = bench(t, gw.port, calls=200)            # the JSON report of tlsgate bench
    up = serve(t, "127.0.0.2:0")                # tlsgate bench --serve; up.addr, up.port
    ep = endpoint(gw.stats(), "listener", "127.0.0.2:8080", "connections_total")

Every process is a tglib.Proc: killed by PID at the end of the test.
"""
import json
import os
import random
import re
import signal
import socket
import subprocess

import tglib
from tglib import check, check_eq, wait_until

DNSMASQ = "/usr/sbin/dnsmasq"
TLSGATE = None


def tlsgate():
    global TLSGATE
    TLSGATE = TLSGATE or tglib.tlsgate_path()
    return TLSGATE


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_udp_port():
    """A port of 127.0.0.1 free for UDP and TCP a moment ago (dnsmasq cannot
    pick one, and listens on both). Below the ephemeral range: there, the
    client sockets of tests running alongside (thousands of connections a
    second under tlsgate bench) hold ports that a listener cannot take."""
    rng = random.SystemRandom()
    low = max(1024, min(_ephemeral_low(), 32768) - 12000)
    high = min(_ephemeral_low(), 32768) - 1
    for _ in range(100):
        port = rng.randint(low, high)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind(("127.0.0.1", port))
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                t.bind(("127.0.0.1", port))
                return port
        except OSError:
            continue
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DnsMasq:
    """dnsmasq answering only from its hosts file (no upstream servers, no
    /etc/hosts, no cache: every query sees the file as it is). `--local`
    makes it authoritative for the test domains: a name not in the file is
    NXDOMAIN at once."""

    def __init__(self, t, hosts_text, domains=("test",)):
        if not os.access(DNSMASQ, os.X_OK):
            raise tglib.TestSkip("%s is not installed (Debian package dnsmasq-base)" % DNSMASQ)
        self.t = t
        self.hosts = t.path("dns-hosts")
        self._write(hosts_text)
        self.reads = 0
        for _ in range(5):
            self.port = free_udp_port()
            argv = [DNSMASQ, "--no-daemon", "--port=%d" % self.port,
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                    "--no-hosts", "--addn-hosts=" + self.hosts, "--cache-size=0",
                    "--log-queries", "--log-facility=-", "--pid-file="]
            argv += ["--local=/%s/" % d for d in domains]
            if os.getuid() == 0:
                # It would switch to an account that cannot read our temp dir
                # when SIGHUP makes it read the file again.
                argv.append("--user=root")
            self.proc = t.spawn("dnsmasq", argv)
            try:
                wait_until(lambda: not self.proc.alive() or self._read_count() >= 1, 10,
                           "dnsmasq to read its hosts file")
            except tglib.TestFailure:
                self.proc.kill()
                raise
            if self.proc.alive():
                self.reads = self._read_count()
                self.addr = "127.0.0.1:%d" % self.port
                return
            # The port was taken between our probe and its bind: another one.
        raise tglib.TestFailure("dnsmasq did not start (see its log)")

    def _write(self, text):
        tmp = self.hosts + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.hosts)

    def _read_count(self):
        return len(re.findall(r"read %s - \d+ names?" % re.escape(self.hosts), self.proc.log()))

    def set_hosts(self, text):
        """Rewrite the hosts file and wait until dnsmasq has read it again."""
        self._write(text)
        os.kill(self.proc.pid, signal.SIGHUP)
        want = self.reads + 1
        wait_until(lambda: self._read_count() >= want, 10, "dnsmasq to re-read its hosts file")
        self.reads = self._read_count()

    def queries(self, name):
        """How many queries for name dnsmasq has logged."""
        return len(re.findall(r"query\[\w+\] %s from" % re.escape(name), self.proc.log()))


class Served:
    """An upstream process (tlsgate bench --serve) on a given address."""

    def __init__(self, t, listen, name):
        self.t = t
        self.name = name
        self.proc = t.spawn(name, [tlsgate(), "bench", "--serve", listen, "--quiet"])
        wait_until(lambda: not self.proc.alive() or "serving on " in self.proc.log(), 10,
                   "%s to listen" % name)
        m = re.search(r"serving on (\S+)", self.proc.log())
        if not self.proc.alive() or m is None:
            raise OSError("%s did not start on %s: %s" % (name, listen, self.proc.log()[-300:]))
        self.addr = m.group(1)
        self.port = int(self.addr.rsplit(":", 1)[1])

    def kill(self):
        self.proc.kill()


def serve(t, listen="127.0.0.1:0", name="upstream"):
    return Served(t, listen, name)


def serve_same_port(t, hosts, name="upstream"):
    """One upstream per host (e.g. 127.0.0.2, 127.0.0.3), all on one port:
    a name's addresses share the port of its endpoint entry. Returns
    (port, [Served])."""
    for _ in range(10):
        first = serve(t, "%s:0" % hosts[0], "%s-%s" % (name, hosts[0]))
        ups = [first]
        try:
            for h in hosts[1:]:
                ups.append(serve(t, "%s:%d" % (h, first.port), "%s-%s" % (name, h)))
            return first.port, ups
        except OSError:
            for u in ups:
                u.kill()  # that port is taken on another address: try again
    raise tglib.TestFailure("no port free on all of %s" % (hosts,))


def bench(t, port, calls=200, conns=4, host="127.0.0.1", extra=(), timeout=120, name="bench"):
    """Run tlsgate bench (new TLS connection per call) and return its JSON
    report; the report's errors are the test's to judge."""
    out = t.unique_path(name, ".json")
    target = "https://%s:%d/" % ("[%s]" % host if ":" in host else host, port)
    argv = [tlsgate(), "bench", "-k", "--quiet", "--json", out, "-c", str(conns), "-n", str(calls),
            "--timeout", "%ds" % int(20 * tglib.SCALE)] + list(extra) + [target]
    p = t.spawn(name, argv)
    rc = p.wait(timeout)
    check(rc is not None, "%s did not finish within %ds" % (name, timeout))
    with open(out) as f:
        rep = json.load(f)
    check(rc in (0, 1), "%s exit status %r: %s" % (name, rc, p.log()[-500:]))
    return rep


def bench_start(t, port, calls, conns=4, name="bench"):
    """Start tlsgate bench in the background; returns (Proc, json path)."""
    out = t.unique_path(name, ".json")
    argv = [tlsgate(), "bench", "-k", "--quiet", "--json", out, "-c", str(conns), "-n", str(calls),
            "--timeout", "%ds" % int(20 * tglib.SCALE), "https://127.0.0.1:%d/" % port]
    return t.spawn(name, argv), out


def bench_finish(p, out, timeout=120):
    rc = p.wait(timeout)
    check(rc is not None, "bench did not finish within %ds" % timeout)
    with open(out) as f:
        return json.load(f)


def errors(rep):
    """{kind: count} of the failed calls of a bench report."""
    return {k: v for k, v in rep["errors"].items() if k != "total" and v}


def endpoint(st, listener, ep, metric, **labels):
    """A per-endpoint series: tlsgate_upstream_endpoint_<metric>{listener, endpoint}."""
    return st("tlsgate_upstream_endpoint_" + metric, listener=listener, endpoint=ep, **labels)


def endpoints(st, listener):
    """The endpoint labels of a listener's cluster now."""
    return sorted(lb["endpoint"] for n, lb, _ in st.series
                  if n == "tlsgate_upstream_endpoint_active" and lb.get("listener") == listener)


def raw_get(port, host="127.0.0.1", timeout=10):
    """One request over TLS; returns the response bytes (b"" when closed)."""
    with tglib.tls_connect(port, host=host, timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            return tglib.recv_all(s)
        except (ConnectionResetError, OSError):
            return b""


__all__ = ["DnsMasq", "serve", "serve_same_port", "bench", "bench_start", "bench_finish",
           "errors", "endpoint", "endpoints", "raw_get", "check", "check_eq", "subprocess"]
