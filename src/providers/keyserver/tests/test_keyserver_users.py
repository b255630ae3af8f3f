#!/usr/bin/env python3
"""The key server and the gateway as different users (needs root; skipped
otherwise).

The key file belongs to root, mode 0600; the key server runs as root and
allows uid nobody; its socket is mode 0660, group nogroup.

  1. the gateway runs as nobody:nogroup: it cannot read the key file (a
     `cat` as nobody fails), yet it serves TLS with that key through the key
     server: openssl s_client and tlsgate bench;
  2. a gateway run as another uid, in the socket's group but not allowed by
     the key server: refused at start-up, exit 2, with the reason;
  3. a gateway run as nobody but outside the socket's group (the file
     permission stops it before SO_PEERCRED): it starts with a warning (the
     key server may yet come up) and its handshakes fail, counted, without
     waiting: the outage is older than the timeout;
  4. the memory test: with an RSA-2048 key in the key server, the gateway's
     whole memory, read through /proc/PID/mem while it signs under load,
     holds neither of the key's primes (its modulus, from the certificate,
     is there: the scan works), and the key server's holds both.
"""
import grp
import os
import pwd
import sys

sys.path.insert(0, os.path.join(os.environ.get("TG_SRC_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../../..")), "tests", "integration"))
import tglib  # noqa: E402
import tgcluster  # noqa: E402
import tgks  # noqa: E402
from tglib import check, check_eq  # noqa: E402


class GatewayAs(tglib.Gateway):
    """`tlsgate run` as another user (setpriv), otherwise a tglib.Gateway."""

    def __init__(self, t, cfg, uid, gid, name, wait=True):
        self.cfg_path = t.unique_path(name, ".yaml")
        with open(self.cfg_path, "w") as f:
            f.write(tglib.to_yaml(cfg) + "\n")
        os.chmod(self.cfg_path, 0o644)
        argv = [tglib.tlsgate_path(), "run", "--config", self.cfg_path, "--log-level",
                tglib.LOG_LEVEL]
        env = None
        if tglib.VALGRIND:
            argv, env = tglib.valgrind_wrap(t, argv)
            os.chmod(os.path.join(t.dir, "vg_async_stacks.so"), 0o755)
        argv = ["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups"] + argv
        tglib.Proc.__init__(self, t, name, argv, env)
        self.ports = {}
        self.admin_port = None
        if wait:
            self.wait_ready()


def main(t):
    if os.geteuid() != 0:
        raise tglib.TestSkip("needs root (to run the gateway as another user)")
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    os.chmod(t.dir, 0o755)
    cert, key = t.cert("ec", "a.test")
    os.chown(key, 0, 0)
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    sock = t.path("keys.sock")
    ks = tgks.KeyServer(t, tgks.ks_config(sock, [(key, cert, None)], allowed_uids=["nobody"],
                                          socket_group="nogroup", socket_mode="0660"))
    st = os.stat(sock)
    check_eq((st.st_mode & 0o777, st.st_gid), (0o660, nogroup), "socket mode and group")
    up = tgcluster.serve(t)
    def cfg_with(timeout):
        return tglib.gw_config([tglib.listener([tgks.remote_cert(cert, sock, timeout=timeout)],
                                               up.addr)], concurrency=2)
    cfg = cfg_with("%ds" % min(60, int(10 * tglib.SCALE)))

    with t.case("the gateway as nobody, who cannot read the key"):
        r = t.run_cmd(["setpriv", "--reuid", str(nobody), "--regid", str(nogroup),
                       "--clear-groups", "cat", key])
        check(r.returncode != 0 and b"Permission denied" in r.stderr,
              "nobody could read the key file: %r" % r.stderr)
        gw = GatewayAs(t, cfg, nobody, nogroup, "gw-nobody")
        r = t.run_cmd(["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port, "-tls1_3",
                       "-servername", "a.test"], input=b"Q\n")
        out = r.stdout.decode()
        check("Cipher is TLS_" in out, "s_client: %s" % out[-400:])
        rep = tgcluster.bench(t, gw.port, calls=100, conns=4)
        check_eq(rep["ok"], 100, "bench: %r" % tgcluster.errors(rep))
        check_eq(ks.stats()("tlsgate_keyserver_connections_refused_total"), 0, "refusals")
        gw.stop_ok()

    with t.case("a uid the key server does not allow: exit 2"):
        p = GatewayAs(t, cfg, 4242, nogroup, "gw-4242", wait=False)
        check_eq(p.wait(30), 2, "exit status")
        check("refuses this process (not_allowed: pid" in p.log() and "uid 4242" in p.log(),
              p.log()[-500:])
        check_eq(ks.stats()("tlsgate_keyserver_connections_refused_total", reason="not_allowed"),
                 1, "refusal counted")

    with t.case("outside the socket's group: warned, handshakes fail fast, counted"):
        gw = GatewayAs(t, cfg_with("%dms" % int(300 * tglib.SCALE)), nobody, 4243, "gw-nogroup")
        check("not reachable at start-up (Permission denied)" in gw.log(), gw.log()[-500:])
        tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_disconnects_total",
                                            reason="connect_failed") >= 2, 20,
                         "both workers to try")
        rep = tgcluster.bench(t, gw.port, calls=20, conns=2)
        check_eq(rep["ok"], 0, "no handshake can succeed")
        tglib.settle(gw)
        s = gw.stats()
        failed = s("tlsgate_keyserver_client_failures_total")
        check_eq(failed, 20, "every failure counted")
        check_eq(s("tlsgate_handshakes_total", result="key_operation_failed"), 20,
                 "every handshake failure counted")
        check(s("tlsgate_keyserver_client_failures_total", reason="unavailable") >= 1,
              "once the outage is older than the timeout, failures are immediate")
        gw.stop_ok()

    with t.case("the memory test: no prime of the key in the gateway's memory"):
        rsa_cert, rsa_key = t.cert("rsa", "a.test")
        os.chmod(rsa_key, 0o600)
        os.chmod(rsa_cert, 0o644)
        rsock = t.path("rsa.sock")
        ks2 = tgks.KeyServer(t, tgks.ks_config(rsock, [(rsa_key, None, None)],
                                               allowed_uids=["nobody"], socket_mode="0666"),
                             name="keyserver-rsa")
        rcfg = tglib.gw_config([tglib.listener(
            [tgks.remote_cert(rsa_cert, rsock, timeout="%ds" % min(60, int(10 * tglib.SCALE)))],
            up.addr)], concurrency=2)
        gw = GatewayAs(t, rcfg, nobody, nogroup, "gw-rsa")
        n, p, q = tgks.rsa_primes(rsa_key)
        rep = tgcluster.bench(t, gw.port, calls=50, conns=4)
        check_eq(rep["ok"], 50, "bench: %r" % tgcluster.errors(rep))
        bench, out = tgcluster.bench_start(t, gw.port, 100000, conns=4, name="bench-scan")
        tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_requests_total") > 100,
                         30, "signing under load")
        found = tgks.scan_memory(gw.pid, [("n", n), ("p", p), ("q", q)])
        print("    gateway (pid %d): %r" % (gw.pid, found))
        check(found["n"], "the modulus is not in the gateway's memory: the scan is broken")
        check(not found["p"] and not found["q"], "a prime of the key is in the gateway's memory")
        found = tgks.scan_memory(ks2.pid, [("p", p), ("q", q)])
        print("    key server (pid %d): %r" % (ks2.pid, found))
        check(found["p"] and found["q"], "the primes are not in the key server's memory")
        bench.kill()
        gw.stop_ok()
        ks2.stop_ok()

    with t.case("clean exit"):
        ks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=560 if tglib.VALGRIND else 180)
