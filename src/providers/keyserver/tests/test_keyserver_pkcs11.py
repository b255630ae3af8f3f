#!/usr/bin/env python3
"""A key server whose key is in a PKCS#11 token (SoftHSM2; skipped where it
is not installed): the key server runs the pkcs11 provider exactly as a
gateway would (a key the provider holds: no private_key, the public key from
the token), and a gateway with two workers signs through it.

  1. an RSA-2048 key made inside the token; `tlsgate keyserver --check`
     logs in and finds it; the key server logs its key id, the gateway's
     start-up check finds the same key by its certificate;
  2. handshakes with openssl s_client (TLS 1.2 PKCS#1 v1.5, TLS 1.3 PSS)
     and tlsgate bench: every one signed by the token (the key server's
     tlsgate_pkcs11_operations_total), none failed on either side;
  3. clean exits.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.environ.get("TG_SRC_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../../..")), "tests", "integration"))
import tglib  # noqa: E402
import tgcluster  # noqa: E402
import tgks  # noqa: E402
from tglib import check, check_eq  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"


def main(t):
    if not os.path.exists(MODULE) or not shutil.which("softhsm2-util") or \
            not shutil.which("pkcs11-tool"):
        raise tglib.TestSkip("SoftHSM2 (softhsm2, opensc) not installed")
    tokens = t.path("tokens")
    os.mkdir(tokens)
    conf = t.path("softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                % tokens)
    env = dict(os.environ, SOFTHSM2_CONF=conf)
    os.environ["SOFTHSM2_CONF"] = conf  # for the key server started below

    def run(argv):
        r = t.run_cmd(argv, env=env)
        check(r.returncode == 0, "%s: %s" % (argv[0], r.stderr.decode()[-400:]))
        return r

    run(["softhsm2-util", "--init-token", "--free", "--label", "tlsgate", "--so-pin", "13579246",
         "--pin", PIN])
    run(["pkcs11-tool", "--module", MODULE, "--token-label", "tlsgate", "--login", "--pin", PIN,
         "--keypairgen", "--key-type", "rsa:2048", "--label", "server-rsa", "--id", "01"])
    der = t.path("pub.der")
    run(["pkcs11-tool", "--module", MODULE, "--token-label", "tlsgate", "--read-object",
         "--type", "pubkey", "--label", "server-rsa", "-o", der])
    pub = t.path("pub.pem")
    run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pub])
    ca_cert, ca_key = t.cert("ec", "ca.test", name="ca")
    csr_key = t.path("csr.key")
    csr = t.run_cmd(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-keyout", csr_key, "-subj",
                     "/CN=a.test"]).stdout
    cert = t.path("server.pem")
    r = t.run_cmd(["openssl", "x509", "-req", "-CA", ca_cert, "-CAkey", ca_key, "-days", "2",
                   "-force_pubkey", pub, "-out", cert], input=csr)
    check(r.returncode == 0, "certificate: %s" % r.stderr.decode()[-300:])
    pinfile = t.path("pin")
    with open(pinfile, "w") as f:
        f.write(PIN + "\n")

    sock = t.path("keys.sock")
    ks_cfg = tgks.ks_config(sock, [(None, cert, {
        "provider_name": "pkcs11",
        "typed_config": {"module": MODULE, "key": "pkcs11:token=tlsgate;object=server-rsa",
                         "pin": {"filename": pinfile}, "threads": 2}})])
    up = tgcluster.serve(t)

    with t.case("the key server holds a token's key"):
        path = t.unique_path("check", ".yaml")
        with open(path, "w") as f:
            f.write(tglib.to_yaml(ks_cfg) + "\n")
        r = t.run_cmd([tglib.tlsgate_path(), "keyserver", "--config", path, "--check"], env=env)
        check_eq(r.returncode, 0, "--check: %s" % r.stderr.decode()[-600:])
        ks = tgks.KeyServer(t, ks_cfg)
        check("provider pkcs11" in ks.log(), ks.log()[-800:])
        timeout = "%ds" % min(60, int(10 * tglib.SCALE))
        gw = t.gateway(tglib.gw_config(
            [tglib.listener([tgks.remote_cert(cert, sock, timeout=timeout)], up.addr)],
            concurrency=2))
        check("holds key" in gw.log(), gw.log()[-600:])

    with t.case("handshakes signed by the token through the key server"):
        for args, want in ((["-tls1_2", "-sigalgs", "RSA+SHA256"], "Cipher is ECDHE-RSA"),
                           (["-tls1_3"], "Cipher is TLS_")):
            r = t.run_cmd(["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port,
                           "-servername", "a.test"] + args, input=b"Q\n")
            check(want in r.stdout.decode(), "s_client %s: %s" % (args, r.stdout.decode()[-400:]))
        calls = 20 if tglib.VALGRIND else 200
        rep = tgcluster.bench(t, gw.port, calls=calls, conns=4)
        check_eq(rep["ok"], calls, "bench: %r" % tgcluster.errors(rep))
        tglib.settle(gw)
        st, kst = gw.stats(), ks.stats()
        signed = kst("tlsgate_pkcs11_operations_total", result="ok")
        check_eq(signed, st("tlsgate_keyserver_client_requests_total"),
                 "every request signed by the token")
        check(signed >= calls + 2, "signatures: %d" % signed)
        check_eq(st("tlsgate_keyserver_client_failures_total"), 0, "gateway failures")
        check_eq(kst("tlsgate_keyserver_requests_total", type="sign", status="failed"), 0,
                 "key server failures")

    with t.case("clean exits"):
        gw.stop_ok()
        ks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=560 if tglib.VALGRIND else 180)
