#!/usr/bin/env python3
"""Scriptable plaintext TCP upstreams for the tlsgate integration tests.

Importable (tglib.py starts them as threads and inspects what they saw) and
runnable as a script from the shell tests:

    tg_upstream.py MODE [--listen 127.0.0.1:0] [--port-file FILE]

It prints "serving on HOST:PORT" once listening, exits 0 on SIGTERM/SIGINT.

Modes (what every accepted connection gets):
  echo       echo every byte back as it arrives; on EOF from the client send
             "\\nUPSTREAM-EOF <bytes> <sha256>\\n" and close (tests half-close)
  http       minimal HTTP/1.1: reads one request (Content-Length body), answers
             200 with a JSON body {"method","path","body_len","body_sha256"};
             GET /bytes/N answers N deterministic bytes (see pattern_bytes);
             then closes (Connection: close)
  close      accept, then close at once (FIN) without reading
  reset      accept, then close with RST (SO_LINGER 0)
  partial    read the request head, send the first half of a response whose
             Content-Length is larger, then close
  silent     accept and read forever, never answer
  first      send "HELLO-FROM-UPSTREAM\\n" * 1000 at once, then shutdown(SHUT_WR),
             keep reading until the client's EOF (tests the reverse half-close)
  oneshot    read the request head, answer ONESHOT_REPLY and its FIN in one TCP
             segment (send with MSG_MORE, then shutdown(SHUT_WR)), keep reading
             until the client's EOF (the last bytes arrive with the EOF)
  proxy      expect a PROXY protocol header (v1 or v2, parsed by
             parse_proxy_header below, independently of tlsgate's C code),
             answer one JSON line describing it (also kept in the
             connection's record, .proxy), then echo like "echo"; a header
             that is not valid gets "PROXY-ERROR <why>\\n" and a close
  stall      never accept: the listen queue (backlog 0) is filled with the
             server's own connections, so the kernel drops further SYNs and a
             client's connect hangs until its timeout (a slow endpoint). If the
             kernel still completes connects, it says so on stderr and exits 3

Only loopback addresses are used by the tests.
"""
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

MODES = ("echo", "http", "close", "reset", "partial", "silent", "first", "oneshot", "proxy",
         "stall")
FIRST_PAYLOAD = b"HELLO-FROM-UPSTREAM\n" * 1000
ONESHOT_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nlast!\n"


def pattern_bytes(n):
    """N deterministic bytes (what http mode returns for GET /bytes/N)."""
    block = bytes(range(256)) * 64  # 16 KiB
    out = bytearray()
    i = 0
    while len(out) < n:
        # vary the blocks so that a duplicated or dropped block shows
        out += hashlib.sha256(i.to_bytes(8, "big")).digest()[:16] + block
        i += 1
    return bytes(out[:n])


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
# TLV types of the PROXY protocol specification (section 2.2).
PP2_TYPES = {0x01: "alpn", 0x02: "authority", 0x03: "crc32c", 0x04: "noop", 0x05: "unique_id",
             0x20: "ssl", 0x30: "netns"}
PP2_SSL_SUBTYPES = {0x21: "version", 0x22: "cn", 0x23: "cipher", 0x24: "sig_alg",
                    0x25: "key_alg"}


def _pp2_tlvs(b):
    """[(type, value)] of a TLV block; ValueError if it does not add up."""
    out, i = [], 0
    while i < len(b):
        if len(b) - i < 3:
            raise ValueError("truncated TLV")
        t, n = b[i], struct.unpack(">H", b[i + 1:i + 3])[0]
        if i + 3 + n > len(b):
            raise ValueError("TLV longer than the header")
        out.append((t, b[i + 3:i + 3 + n]))
        i += 3 + n
    return out


def parse_proxy_header(buf):
    """(info, length) of the PROXY header at the start of buf, None if buf
    is too short to tell; ValueError if it is not a valid header. info:
    version, command, family, src, sport, dst, dport (None when absent),
    tlvs (every type, in order), and decoded authority, alpn, ssl."""
    if buf[:len(PP2_SIG)] == PP2_SIG[:len(buf)] and len(buf) < 16:
        return None
    if buf.startswith(PP2_SIG):
        ver_cmd, fam, n = buf[12], buf[13], struct.unpack(">H", buf[14:16])[0]
        if ver_cmd >> 4 != 2 or ver_cmd & 15 > 1:
            raise ValueError("bad version/command %#x" % ver_cmd)
        if len(buf) < 16 + n:
            return None
        blk = buf[16:16 + n]
        info = {"version": 2, "command": "PROXY" if ver_cmd & 15 else "LOCAL", "src": None,
                "sport": None, "dst": None, "dport": None, "tlvs": [], "authority": None,
                "alpn": None, "ssl": None}
        if info["command"] == "LOCAL":
            info["family"] = "UNSPEC"
            return info, 16 + n
        fams = {0x00: ("UNSPEC", None, 0), 0x11: ("TCP4", socket.AF_INET, 4),
                0x21: ("TCP6", socket.AF_INET6, 16)}
        if fam not in fams:
            raise ValueError("family %#x" % fam)
        info["family"], af, alen = fams[fam]
        if af is not None:
            if n < 2 * alen + 4:
                raise ValueError("short address block")
            info["src"] = socket.inet_ntop(af, blk[:alen])
            info["dst"] = socket.inet_ntop(af, blk[alen:2 * alen])
            info["sport"], info["dport"] = struct.unpack(">HH", blk[2 * alen:2 * alen + 4])
            blk = blk[2 * alen + 4:]
        for t, v in _pp2_tlvs(blk):
            info["tlvs"].append([t, v.hex()])
            if t == 0x02:
                info["authority"] = v.decode("utf-8")
            elif t == 0x01:
                info["alpn"] = v.decode("latin-1")
            elif t == 0x20:
                if len(v) < 5:
                    raise ValueError("short SSL TLV")
                ssl = {"client": v[0], "verify": struct.unpack(">I", v[1:5])[0], "sub": []}
                for st, sv in _pp2_tlvs(v[5:]):
                    ssl["sub"].append(st)
                    if st in PP2_SSL_SUBTYPES:
                        ssl[PP2_SSL_SUBTYPES[st]] = sv.decode("latin-1")
                info["ssl"] = ssl
        return info, 16 + n
    if not b"PROXY"[:len(buf)] == buf[:5]:
        raise ValueError("no PROXY signature")
    end = buf.find(b"\r\n")
    if end < 0:
        if len(buf) >= 107:
            raise ValueError("no CRLF within 107 bytes")
        return None
    line = buf[:end].decode("ascii")
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return {"version": 1, "command": "PROXY", "family": "UNKNOWN", "src": None,
                "sport": None, "dst": None, "dport": None, "tlvs": [], "authority": None,
                "alpn": None, "ssl": None}, end + 2
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        raise ValueError("bad v1 line %r" % line)
    af = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
    for a in parts[2:4]:
        socket.inet_pton(af, a)  # raises OSError (a ValueError below) if not an address
    sport, dport = int(parts[4]), int(parts[5])
    return {"version": 1, "command": "PROXY", "family": parts[1], "src": parts[2], "sport": sport,
            "dst": parts[3], "dport": dport, "tlvs": [], "authority": None, "alpn": None,
            "ssl": None}, end + 2


def parse_addr(s):
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return socket.AF_INET6, host, int(port)
    host, _, port = s.rpartition(":")
    return socket.AF_INET, host, int(port)


class ConnRecord:
    """What the upstream saw on one connection (read by tests)."""

    def __init__(self, peer):
        self.peer = peer
        self.received = bytearray()
        self.saw_eof = False
        self.error = None
        self.proxy = None  # mode proxy: what parse_proxy_header found
        self.closed = threading.Event()


class Upstream:
    """A threaded TCP server; one thread per connection."""

    def __init__(self, mode, listen="127.0.0.1:0", backlog=128):
        if mode not in MODES:
            raise ValueError("unknown mode %r" % mode)
        self.mode = mode
        fam, host, port = parse_addr(listen)
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(0 if mode == "stall" else backlog)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.addr = ("[%s]:%d" % (host, self.port)) if fam == socket.AF_INET6 else (
            "%s:%d" % (host, self.port))
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.fillers = []
        if mode == "stall":
            self._fill_queue(fam)
            return
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _fill_queue(self, fam):
        """Fill the accept queue with our own connections; raise OSError if a
        probe connect still completes (the kernel does not drop SYNs here)."""
        addr = self.sock.getsockname()
        for _ in range(3):
            c = socket.socket(fam, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(addr)
            self.fillers.append(c)
        time.sleep(0.1)
        probe = socket.socket(fam, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(addr)
            completed = True
        except (socket.timeout, OSError):
            completed = False
        finally:
            probe.close()
        if completed:
            raise OSError("the kernel completed a connect on a full listen queue")

    # -- server --
    def _accept_loop(self):
        while not self.stopping:
            try:
                s, peer = self.sock.accept()
            except OSError:
                return
            rec = ConnRecord(peer)
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def _serve(self, s, rec):
        try:
            getattr(self, "_mode_" + self.mode)(s, rec)
        except OSError as e:
            rec.error = e
        finally:
            try:
                s.close()
            except OSError:
                pass
            rec.closed.set()

    def _recv(self, s, rec, n=65536):
        d = s.recv(n)
        if d:
            rec.received += d
        else:
            rec.saw_eof = True
        return d

    def _read_head(self, s, rec):
        while b"\r\n\r\n" not in rec.received:
            if not self._recv(s, rec):
                return None
        head, _, rest = bytes(rec.received).partition(b"\r\n\r\n")
        return head, rest

    def _mode_echo(self, s, rec):
        h = hashlib.sha256()
        n = 0
        while True:
            d = self._recv(s, rec)
            if not d:
                break
            h.update(d)
            n += len(d)
            s.sendall(d)
        s.sendall(b"\nUPSTREAM-EOF %d %s\n" % (n, h.hexdigest().encode()))
        s.shutdown(socket.SHUT_WR)

    def _mode_http(self, s, rec):
        r = self._read_head(s, rec)
        if r is None:
            return
        head, rest = r
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ") + ["", "", ""])[:3]
        clen = 0
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "content-length":
                clen = int(v.strip())
            if k.strip().lower() == "expect" and "100-continue" in v.lower():
                s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = bytearray(rest)
        h = hashlib.sha256()
        while len(body) < clen:
            d = self._recv(s, rec, min(1 << 20, clen - len(body)))
            if not d:
                break
            body += d
        h.update(body[:clen])
        if method == "GET" and path.startswith("/bytes/"):
            payload = pattern_bytes(int(path[len("/bytes/"):]))
            ctype = b"application/octet-stream"
        else:
            payload = json.dumps({"method": method, "path": path, "body_len": len(body),
                                  "body_sha256": h.hexdigest()}).encode() + b"\n"
            ctype = b"application/json"
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: " +
                  str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n" + payload)
        s.shutdown(socket.SHUT_WR)
        # Read until the client's side ends so that close() sends FIN, not RST.
        s.settimeout(10)
        try:
            while self._recv(s, rec):
                pass
        except OSError:
            pass

    def _mode_close(self, s, rec):
        pass

    def _mode_reset(self, s, rec):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _mode_partial(self, s, rec):
        if self._read_head(s, rec) is None:
            return
        body = b"x" * 1000
        resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * len(body))) + body
        s.sendall(resp)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            while self._recv(s, rec):
                pass
        except OSError:
            pass

    def _mode_silent(self, s, rec):
        while self._recv(s, rec):
            pass

    def _mode_oneshot(self, s, rec):
        if self._read_head(s, rec) is None:
            return
        s.send(ONESHOT_REPLY, socket.MSG_MORE)  # small: all of it is taken
        s.shutdown(socket.SHUT_WR)
        while self._recv(s, rec):
            pass

    def _mode_proxy(self, s, rec):
        while True:
            try:
                r = parse_proxy_header(bytes(rec.received))
            except (ValueError, OSError) as e:
                s.sendall(b"PROXY-ERROR %s\n" % str(e).encode())
                return
            if r is not None:
                break
            if not self._recv(s, rec):
                return
        info, used = r
        rec.proxy = info
        rest = bytes(rec.received[used:])
        s.sendall(json.dumps(info, sort_keys=True).encode() + b"\n" + rest)
        while True:
            d = self._recv(s, rec)
            if not d:
                break
            s.sendall(d)
        s.shutdown(socket.SHUT_WR)

    def _mode_first(self, s, rec):
        s.sendall(FIRST_PAYLOAD)
        s.shutdown(socket.SHUT_WR)
        while self._recv(s, rec):
            pass

    # -- test side --
    def wait_conns(self, n, timeout):
        """Wait until n connections have been accepted and have ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [c for c in self.conns if c.closed.is_set()]
            if len(done) >= n:
                return done
            time.sleep(0.02)
        with self.lock:
            return [c for c in self.conns if c.closed.is_set()]

    def stop(self):
        self.stopping = True
        for c in self.fillers:
            c.close()
        try:
            self.sock.close()
        except OSError:
            pass


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file")
    a = ap.parse_args(argv)
    try:
        up = Upstream(a.mode, a.listen)
    except OSError as e:
        print("cannot serve in mode %s: %s" % (a.mode, e), file=sys.stderr, flush=True)
        return 3
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % up.port)
        os.rename(tmp, a.port_file)
    print("serving on %s" % up.addr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
