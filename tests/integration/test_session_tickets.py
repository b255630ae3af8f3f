#!/usr/bin/env python3
"""Session ticket keys: rotation, the previous key, sharing across workers
and reloads, with `openssl s_client` (TLS 1.2 tickets, whose first 16 bytes
are the key name, printed by s_client) and Python's ssl (TLS 1.3).

1. Rotation (two workers, session_tickets.key_rotation_interval of a few
   seconds): a ticket A is taken; the test waits until new tickets carry
   another key name (B), then resumes A: it must resume (the previous key
   still decrypts). Whether a second rotation slipped in during that
   resumption is known afterwards: a ticket taken right after it carries
   B's name again only if not; if one did, the round is repeated (bounded).
   Then the test waits until new tickets carry a third name: A is two
   intervals old, its key wiped, and it must not resume (a full handshake).
   The tlsgate_session_tickets_total counters agree.
2. Two workers, one hour keys: 24 TLS 1.2 and 24 TLS 1.3 sessions, each
   from its own connection (the kernel spreads connections over the two
   workers' sockets), each resumed on a new connection: all resume.
3. A reload (SIGHUP): tickets issued before it resume after it, TLS 1.2 and
   1.3; their key name is unchanged.
4. session_resumption: false: no ticket at all.
5. Client certificates: a reload that keeps the CA keeps sessions (with
   their verified identity) resumable; a reload that adds a CRL revoking
   the client makes its session do a full handshake, which is refused: the
   session context follows the verification settings, so one key ring
   across reloads never lets a revoked client back in.

No sleep decides anything: every wait is a bounded poll on what a client
observes (the key name in fresh tickets).
"""
import re
import signal
import ssl

import tglib
import tg_pki
import tg_reload as R
from tglib import check, check_eq

# Short enough to see two rotations quickly, long enough for a handful of
# handshakes inside one interval even under valgrind.
INTERVAL = max(2, int(round(2 * tglib.SCALE)))


def config(up, cert, key, interval, resumption=True, workers=2):
    return """concurrency: %d
admin: { address: 127.0.0.1:0 }
session_tickets: { key_rotation_interval: %ds }
listeners:
  - name: l0
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: %s }
          private_key: { filename: %s }
      session_resumption: %s
      session_timeout: 1h
    upstream: { address: %s }
""" % (workers, interval, cert, key, "true" if resumption else "false", up)


def s_client(t, port, sess_out=None, sess_in=None, version="-tls1_2"):
    """Run s_client once; (reused, key name hex or None)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "a.test",
            version]
    if sess_out:
        argv += ["-sess_out", sess_out]
    if sess_in:
        argv += ["-sess_in", sess_in]
    r = t.run_cmd(argv, input=b"", timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    m = re.search(r"^(New|Reused), ", out, re.M)
    check(m is not None, "s_client: no handshake: %s" % (out[-400:] + r.stderr.decode()[-400:]))
    name = None
    tm = re.search(r"TLS session ticket:\n\s*0000 - ((?:[0-9a-f]{2}[ -]){16})", out)
    if tm:
        name = tm.group(1).replace("-", " ").replace(" ", "")
    return m.group(1) == "Reused", name


def ticket(t, port, path):
    """A fresh TLS 1.2 session with a ticket into path; the ticket's key name."""
    reused, name = s_client(t, port, sess_out=path)
    check(not reused, "a session without -sess_in was resumed")
    check(name is not None and len(name) == 32, "no session ticket in s_client's output")
    return name


def test_rotation(t, cert, key, up):
    gw = t.gateway(config(up.addr, cert, key, INTERVAL), name="rotation")
    port = gw.port
    a_path, b_path, c_path = t.path("a.sess"), t.path("b.sess"), t.path("c.sess")
    with t.case("the previous interval's ticket resumes (interval %ds)" % INTERVAL):
        for attempt in range(5):
            a = ticket(t, port, a_path)
            b = tglib.wait_until(lambda: (lambda n: n != a and n)(ticket(t, port, b_path)),
                                 4 * INTERVAL, "tickets with a new key name")
            reused, _ = s_client(t, port, sess_in=a_path)
            c = ticket(t, port, c_path)
            if c == b:
                # No rotation between B and C: A's key was the previous one
                # during the resumption.
                check(reused, "ticket A (key %s) did not resume while key %s was current" % (a, b))
                break
            print("    a rotation came during the check (attempt %d); again" % attempt)
        else:
            raise tglib.TestFailure("5 rounds in a row met a rotation: interval too short here")
    with t.case("a ticket two intervals old does not resume"):
        tglib.wait_until(lambda: ticket(t, port, c_path) not in (a, b), 4 * INTERVAL,
                         "tickets with a third key name")
        reused, name = s_client(t, port, sess_in=a_path)
        check(not reused, "ticket A resumed two rotations later")
        check(name not in (a, b), "the full handshake's new ticket has an old key name")
        st = gw.stats()
        check(st("tlsgate_session_tickets_total", result="resumed_previous_key") >= 1,
              "no resumption with the previous key counted")
        check(st("tlsgate_session_tickets_total", result="unknown_key") >= 1,
              "the expired ticket was not counted")
        check(st("tlsgate_session_ticket_key_rotations_total") >= 2, "rotations not counted")
        check_eq(st("tlsgate_session_ticket_key_rotation_interval_seconds"), INTERVAL,
                 "interval in /stats")
    gw.stop_ok()


def echo_and_close(s):
    """One byte through the echo upstream (a TLS 1.3 ticket, sent after the
    handshake, is read on the way), then close. (libssl marks the session of
    a connection freed without close_notify as spent; Python's ssl hands a
    fresh copy to each new connection.)"""
    s.sendall(b"x")
    check_eq(s.recv(1), b"x", "echo")
    sess = s.session
    s.close()
    return sess


def python_session(port, version):
    """A fresh session with its ticket from Python's ssl: (context, session)."""
    ctx = tglib.client_ctx(version=version)
    s = tglib.tls_connect(port, ctx=ctx)
    sess = echo_and_close(s)
    check(sess is not None and sess.has_ticket, "no ticket (TLS %s)" % version)
    return ctx, sess


def resumes(port, ctx, sess):
    s = tglib.tls_connect(port, ctx=ctx, session=sess)
    reused = s.session_reused
    echo_and_close(s)
    return reused


def test_workers_and_reload(t, cert, key, up):
    gw = t.gateway(config(up.addr, cert, key, 3600), name="shared")
    port = gw.port
    with t.case("two workers: every session resumes on a new connection"):
        for version in ("1.2", "1.3"):
            sessions = [python_session(port, version) for _ in range(24)]
            failed = sum(1 for ctx, sess in sessions if not resumes(port, ctx, sess))
            check_eq(failed, 0, "sessions not resumed (TLS %s, of 24)" % version)
    with t.case("tickets issued before a reload resume after it"):
        old12 = python_session(port, "1.2")
        old13 = python_session(port, "1.3")
        a_path = t.path("pre-reload.sess")
        a = ticket(t, port, a_path)
        before = R.reloads(gw)
        gw.signal(signal.SIGHUP)
        R.wait_reload(gw, before, "SIGHUP")
        check(resumes(port, *old12), "TLS 1.2 session from before the reload")
        check(resumes(port, *old13), "TLS 1.3 session from before the reload")
        reused, _ = s_client(t, port, sess_in=a_path)
        check(reused, "s_client session from before the reload")
        check_eq(ticket(t, port, t.path("post-reload.sess")), a, "key name after the reload")
    gw.stop_ok()


def test_off(t, cert, key, up):
    gw = t.gateway(config(up.addr, cert, key, 3600, resumption=False, workers=1), name="off")
    with t.case("session_resumption: false: no ticket"):
        reused, name = s_client(t, gw.port, sess_out=t.path("off.sess"))
        check(not reused and name is None, "a ticket was issued with resumption off")
        check_eq(gw.stats()("tlsgate_session_tickets_total", result="issued"), 0, "issued")
    gw.stop_ok()


def mtls_config(up, cert, key, ca, crl=None):
    c = config(up, cert, key, 3600, workers=1)
    block = "      client_certificate:\n        ca: { filename: %s }\n" % ca
    if crl:
        block += "        crl: { filename: %s }\n" % crl
    return c.replace("      session_timeout: 1h\n", "      session_timeout: 1h\n" + block)


def test_client_certs(t, cert, key, up):
    root = tg_pki.CA(t.path("pki"), "root", "Test Root CA")
    alice_cert, alice_key = root.issue("alice", "alice")
    gw = t.gateway(mtls_config(up.addr, cert, key, root.cert), name="mtls")
    port = gw.port
    for version in ("1.2", "1.3"):
        with t.case("client certificates, TLS %s: the same CA after a reload resumes" % version):
            ctx = tglib.client_ctx(version=version)
            ctx.load_cert_chain(alice_cert, alice_key)
            sess = echo_and_close(tglib.tls_connect(port, ctx=ctx))
            before = R.reloads(gw)
            gw.signal(signal.SIGHUP)
            R.wait_reload(gw, before, "SIGHUP")
            check(resumes(port, ctx, sess), "a session from before a reload that kept the CA")
    with t.case("a reload adding a CRL that revokes the client: its session does not resume"):
        ctx = tglib.client_ctx(version="1.3")
        ctx.load_cert_chain(alice_cert, alice_key)
        sess12 = python_session_ctx(port, tglib.client_ctx(version="1.2"), alice_cert, alice_key)
        sess13 = echo_and_close(tglib.tls_connect(port, ctx=ctx))
        root.revoke(alice_cert)
        crl = root.crl()
        with open(gw.cfg_path, "w") as f:
            f.write(mtls_config(up.addr, cert, key, root.cert, crl))
        before = R.reloads(gw)
        gw.signal(signal.SIGHUP)
        R.wait_reload(gw, before, "SIGHUP")
        for what, c, sess in (("TLS 1.2", sess12[0], sess12[1]), ("TLS 1.3", ctx, sess13)):
            try:
                s = tglib.tls_connect(port, ctx=c, session=sess)
                s.sendall(b"x")
                reused, got = s.session_reused, s.recv(1)
                s.close()
            except (ssl.SSLError, OSError):
                continue  # refused: the full handshake verified the revoked certificate
            check(not reused and got == b"",
                  "%s: a session of a revoked client resumed (reused=%s, echo=%r)"
                  % (what, reused, got))
        # A TLS 1.3 client is done before the server has checked its
        # certificate: wait for the server's count.
        tglib.wait_until(
            lambda: gw.stats()("tlsgate_client_certificates_total", result="revoked") >= 2, 10,
            "the revoked client's two full handshakes to be counted")
    gw.stop_ok()


def python_session_ctx(port, ctx, cert, key):
    ctx.load_cert_chain(cert, key)
    return ctx, echo_and_close(tglib.tls_connect(port, ctx=ctx))


def main(t):
    cert, key = t.cert("ec", "a.test")
    up = t.upstream("echo")
    test_rotation(t, cert, key, up)
    test_workers_and_reload(t, cert, key, up)
    test_off(t, cert, key, up)
    test_client_certs(t, cert, key, up)


tglib.run(main, timeout=300)
