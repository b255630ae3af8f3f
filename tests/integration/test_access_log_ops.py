#!/usr/bin/env python3
"""Operating the access log (software provider, two workers):
  - logrotate style: rename the file, SIGUSR1, more connections: the lines
    of both files together are exactly the connections made; the new file is
    created with mode 0640 (less the umask); the same with up to five
    rotations while tlsgate bench keeps connections closing on two workers;
  - path: off and no access_log block write nothing (no file, no line on
    stdout); an empty block writes text to stdout;
  - a file in a directory that does not exist: check-config and run exit 2
    with FILE:LINE:COL: access_log.path; a FIFO without a reader: run exits
    2 at start instead of hanging; so does a read-only file (not as root);
  - a full disk (/dev/full): every call succeeds, every line is counted as
    lost (write_error), the warning is not repeated per batch;
  - a destination that never drains (a FIFO whose reader never reads, and
    stdout to a pipe nobody reads), 4 KiB buffers: tlsgate bench completes
    every call without an error, the dropped lines are counted, SIGTERM
    still exits 0 in bounded time and the final report adds up;
  - a reload (SIGHUP, listeners renamed): new connections are logged under
    the new names, one open across it under its old one; a reload that
    changes the access_log block is refused as a whole, the log unchanged;
  - a clean SIGTERM right after a burst writes every line (nothing is left
    in the buffers).
"""
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import time

import tg_alog
import tg_reload as R
import tglib
from tg_alog import parse_text
from tglib import check, check_eq


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def size(n, under_valgrind):
    """n connections, fewer under valgrind (each handshake ~50x slower)."""
    return under_valgrind if tglib.VALGRIND else n


def gw_cfg(t, up, access_log, concurrency=2):
    pair = t.cert("rsa", "a.test")
    cfg = tglib.gw_config([tglib.listener([pair], up, name="main")], concurrency=concurrency)
    if access_log is not None:
        cfg["access_log"] = access_log
    return cfg


def bench(t, port, n, c=8):
    """n calls, each a new connection; all must succeed."""
    r = t.run_cmd([tglib.tlsgate_path(), "bench", "-k", "-n", str(n), "-c", str(c), "--quiet",
                   "--timeout", "30s", "https://127.0.0.1:%d/" % port], timeout=300)
    out = r.stdout.decode() + r.stderr.decode()
    check_eq(r.returncode, 0, "tlsgate bench exit status: %s" % out[-500:])
    m = re.search(r"Calls: (\d+) \((\d+) ok, (\d+) errors\)", out)
    check(m is not None, "bench summary: %s" % out[-500:])
    check_eq((int(m.group(2)), int(m.group(3))), (n, 0), "bench calls ok / errors")


def rotate_case(t, up):
    path = t.path("access.log")
    gw = t.gateway(gw_cfg(t, up, {"path": "access.log"}))  # relative: the config's directory
    n1, n2, n3 = size(100, 30), size(30, 10), size(50, 20)
    bench(t, gw.port, n1)
    tglib.settle(gw)
    tg_alog.wait_written(gw)
    check_eq(len(tg_alog.read_lines(path)), n1, "lines before the rotation")
    os.rename(path, path + ".1")
    bench(t, gw.port, n2)  # some of these may still go to the renamed file
    gw.signal(signal.SIGUSR1)
    tglib.wait_until(lambda: "access log: reopened" in gw.log(), 10, "the reopen")
    bench(t, gw.port, n3)
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    old, new = tg_alog.read_lines(path + ".1"), tg_alog.read_lines(path)
    n = n1 + n2 + n3
    check_eq((len(old) + len(new), a["accepted"], a["full"]), (n, n, 0),
             "lines in both files = connections made")
    check(len(new) >= n3, "the new file has the lines after the reopen: %d" % len(new))
    for ln in old + new:
        parse_text(ln)
    mask = os.umask(0)
    os.umask(mask)
    check_eq(stat.S_IMODE(os.stat(path).st_mode), 0o640 & ~mask, "mode of the new file")
    st = gw.stats()
    check_eq(st("tlsgate_access_log_reopens_total", result="ok"), 1, "reopens")
    gw.stop_ok()


def rotate_under_load_case(t, up):
    """Rotations while connections keep closing on two workers: every line
    lands in exactly one file, whole."""
    path = t.path("busy-access.log")
    gw = t.gateway(gw_cfg(t, up, {"path": path}), name="busy")
    out = t.unique_path("busy-bench", ".json")
    n = size(1500, 100)
    p = t.spawn("busy-bench", [tglib.tlsgate_path(), "bench", "-k", "--quiet", "--json", out,
                               "-c", "8", "-n", str(n), "--timeout", "30s",
                               "https://127.0.0.1:%d/" % gw.port])
    files = [path]
    for i in range(1, 6):
        # Rotate once the current file has lines, as long as bench runs.
        tglib.wait_until(lambda: not p.alive() or tg_alog.read_lines(path), 60, "lines")
        if not p.alive():
            break
        os.rename(path, "%s.%d" % (path, i))
        files.insert(1, "%s.%d" % (path, i))
        gw.signal(signal.SIGUSR1)
        tglib.wait_until(lambda: gw.stats()("tlsgate_access_log_reopens_total", result="ok")
                         == i, 10, "reopen %d" % i)
    check(p.wait(300) == 0, "tlsgate bench: %s" % p.log()[-300:])
    rep = json.load(open(out))
    check_eq(rep["errors"]["total"], 0, "failed calls")
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    lines = [ln for f in files for ln in tg_alog.read_lines(f)]
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        check(data == b"" or data.endswith(b"\n"), "%s ends with a whole line" % f)
    check_eq((len(lines), a["accepted"], a["full"], a["lost"]), (n, n, 0, 0),
             "lines in all files (%d) = connections" % (len(files)))
    for ln in lines:
        parse_text(ln)
    print("    %d rotation(s) while bench ran" % (len(files) - 1))
    gw.stop_ok()


def reload_case(t, up):
    """A reload: the log carries on (a connection of the old generation is
    logged under its old listener name when it closes, new ones under the
    new); a reload that changes the access_log block is refused as a whole
    and the log carries on as it was."""
    path = t.path("reload-access.log")
    silent = t.upstream("silent")
    pair = t.cert("rsa", "a.test")

    def cfg(name, fmt="text"):
        c = tglib.gw_config([tglib.listener([pair], up, name=name),
                             tglib.listener([pair], silent.addr, name=name + "-long")],
                            extra={"reload": {"watch": False}})
        c["access_log"] = {"path": path, "format": fmt}
        return tglib.to_yaml(c) + "\n"
    gw = t.gateway(cfg("gen1"), name="reloading")
    # Open across the reload: through the first generation's listener.
    long_port = gw.ports["gen1-long"]
    s = tglib.tls_connect(long_port)
    s.sendall(b"x")
    tglib.wait_until(lambda: gw.stats()("tlsgate_upstream_connects_total", result="ok") == 1, 10,
                     "the long connection at its upstream")
    before = R.reloads(gw)
    with open(gw.cfg_path, "w") as f:
        f.write(cfg("gen2"))
    gw.signal(signal.SIGHUP)
    R.wait_reload(gw, before, "listeners renamed")

    def port_of(name):
        m = re.findall(r"listener %s: (?:keeps|listening on) \S+:(\d+)," % name, gw.log())
        check(m, "the port of listener %s in the log" % name)
        return int(m[-1])
    bench(t, port_of("gen2"), 3)
    s.close()
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    recs = [parse_text(ln) for ln in tg_alog.read_lines(path)]
    check_eq((len(recs), a["ended"]), (4, 4), "lines")
    check_eq(sorted(d["listener"] for d in recs), [b"gen1-long", b"gen2", b"gen2", b"gen2"],
             "the old connection under its own generation's listener")
    # Changing the access log needs a restart: the whole reload is refused.
    before = R.reloads(gw)
    with open(gw.cfg_path, "w") as f:
        f.write(cfg("gen3", fmt="json"))
    gw.signal(signal.SIGHUP)
    R.wait_reload_error(gw, before, "access_log changed")
    check(re.search(r"reload failed: \S+\.yaml:\d+:\d+: access_log: changed: .* only at a "
                    r"restart", gw.log()), "the refusal names access_log: %s" % gw.log()[-600:])
    bench(t, port_of("gen2"), 2)
    tglib.settle(gw)
    tg_alog.wait_written(gw)
    recs = [parse_text(ln) for ln in tg_alog.read_lines(path)]
    check_eq([d["listener"] for d in recs[4:]], [b"gen2", b"gen2"], "text, as before")
    gw.stop_ok()


def stdout_lines(gw):
    return [ln for ln in gw.log().splitlines() if ln.startswith("time=")]


def off_case(t, up):
    for what, al in (("path: off", {"path": "off"}), ("no access_log block", None)):
        before = set(os.listdir(t.dir))
        gw = t.gateway(gw_cfg(t, up, al, concurrency=1), name="off")
        bench(t, gw.port, 10, c=2)
        tglib.settle(gw)
        st = gw.stats()
        check_eq(st("tlsgate_access_log_lines_total"), 0, "%s: lines_total" % what)
        gw.stop_ok()
        check_eq(stdout_lines(gw), [], "%s: nothing on stdout" % what)
        created = set(os.listdir(t.dir)) - before
        check(all(f.startswith("off") for f in created), "%s: files made: %r" % (what, created))
    gw = t.gateway(gw_cfg(t, up, {}), name="stdout")
    bench(t, gw.port, 10, c=2)
    tglib.settle(gw)
    tg_alog.wait_written(gw)
    gw.stop_ok()
    lines = stdout_lines(gw)
    check_eq(len(lines), 10, "an empty block: text lines on stdout")
    for ln in lines:
        check_eq(parse_text(ln)["term"], b"--", "term")


def config_error_case(t, up):
    pair = t.cert("rsa", "a.test")
    bad = "/nonexistent-tlsgate-dir/sub/access.log"
    cfg_text = tglib.to_yaml(tglib.gw_config([tglib.listener([pair], up)])) + (
        "\naccess_log:\n  path: %s\n" % bad)
    cfg = t.path("bad-dir.yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    line = cfg_text.splitlines().index("  path: %s" % bad) + 1
    want = ("tlsgate: %s:%d:9: access_log.path: cannot open '%s': directory "
            "'/nonexistent-tlsgate-dir/sub': No such file or directory" % (cfg, line, bad))
    for cmd in (["check-config", cfg], ["run", "--config", cfg]):
        r = t.run_cmd([tglib.tlsgate_path()] + cmd, timeout=30)
        check_eq(r.returncode, 2, "%s exit status" % cmd[0])
        check_eq(r.stderr.decode().strip(), want, "%s message" % cmd[0])
    # A FIFO nobody reads: refused at start (a blocking open would hang it).
    fifo = t.path("noreader.fifo")
    os.mkfifo(fifo)
    cfg2 = t.path("fifo.yaml")
    with open(cfg2, "w") as f:
        f.write(cfg_text.replace(bad, fifo))
    r = t.run_cmd([tglib.tlsgate_path(), "run", "--config", cfg2], timeout=30)
    check_eq(r.returncode, 2, "run with a FIFO without reader: exit status")
    check("access_log.path: cannot open '%s': No such device or address" % fifo
          in r.stderr.decode(), "message: %r" % r.stderr.decode())
    # A file we may not write (root may write anything: not checked then).
    if os.getuid() != 0:
        ro = t.path("readonly.log")
        open(ro, "w").close()
        os.chmod(ro, 0o444)
        cfg3 = t.path("ro.yaml")
        with open(cfg3, "w") as f:
            f.write(cfg_text.replace(bad, ro))
        r = t.run_cmd([tglib.tlsgate_path(), "run", "--config", cfg3], timeout=30)
        check_eq(r.returncode, 2, "run with a read-only file: exit status")
        check_eq(r.stderr.decode().strip(), "tlsgate: %s:%d:9: access_log.path: cannot open "
                 "'%s': Permission denied" % (cfg3, line, ro), "read-only file message")


def disk_full_case(t, up):
    """A full disk (/dev/full: every write fails with ENOSPC): connections
    are served, the lines are counted as lost, the warning is rate-limited,
    SIGTERM exits 0."""
    if not os.access("/dev/full", os.W_OK):
        print("    (skipped: no /dev/full)")
        return
    t0 = time.monotonic()
    gw = t.gateway(gw_cfg(t, up, {"path": "/dev/full"}), name="full")
    n = size(200, 30)
    bench(t, gw.port, n)
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    check_eq((a["lines"], a["lost"], a["full"]), (0, n, 0), "every line lost, counted")
    st = gw.stats()
    check(st("tlsgate_access_log_write_errors_total") >= 1, "write errors counted")
    gw.stop_ok()
    took = time.monotonic() - t0
    warns = gw.log().count("access log: cannot write to /dev/full: No space left on device")
    check(1 <= warns <= 1 + took / 10, "one warning per 10 s, not one per batch: %d in %.1fs"
          % (warns, took))


FINAL = re.compile(r"access log: (\d+) line\(s\) written, (\d+) dropped \(buffer full\), "
                   r"(\d+) lost")


def blocked_case(t, up, kind):
    """A destination that never drains: kind 'fifo' (a FIFO whose reader
    never reads) or 'stdout' (a pipe nobody reads)."""
    if kind == "fifo":
        fifo = t.path("blocked.fifo")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held, never read
        gw = t.gateway(gw_cfg(t, up, {"path": fifo, "buffer": "4KiB"}), name="blocked-fifo")
    else:
        gw = t.gateway(gw_cfg(t, up, {"path": "stdout", "buffer": "4KiB"}),
                       name="blocked-stdout", stdout=subprocess.PIPE)
    # The smallest pipe (one page): a few lines fill it, however few
    # connections a slow run (valgrind) makes.
    fcntl.fcntl(reader if kind == "fifo" else gw.p.stdout.fileno(), F_SETPIPE_SZ, 4096)
    try:
        n = size(600, 100)
        bench(t, gw.port, n)  # every call succeeds: the workers never wait
        tglib.settle(gw)
        a = tg_alog.access_stats(gw)
        check(a["full"] > 0, "lines dropped and counted: %r" % a)
        check(a["lines"] + a["full"] <= a["ended"], "counters: %r" % a)
        check_eq(a["ended"], n, "connections")
        t0 = time.monotonic()
        gw.stop_ok(timeout=30)
        dt = time.monotonic() - t0
        check(dt < 5 + 10 * tglib.SCALE, "exit took %.1fs" % dt)
        m = FINAL.search(gw.log())
        check(m is not None, "final access-log report in the log")
        written, dropped, lost = map(int, m.groups())
        check_eq(written + dropped + lost, n, "written + dropped + lost = connections")
        check(dropped >= a["full"], "dropped only grows")
    finally:
        if kind == "fifo":
            os.close(reader)


def shutdown_flush_case(t, up):
    path = t.path("flush-access.log")
    gw = t.gateway(gw_cfg(t, up, {"path": path, "format": "json"}), name="flush")
    bench(t, gw.port, size(400, 60))
    tglib.settle(gw)
    accepted = gw.stats()("tlsgate_connections_accepted_total")
    gw.stop_ok()  # at once: lines may still be in the buffers
    lines = tg_alog.read_lines(path)
    check_eq(len(lines), accepted, "every line written at exit")
    for ln in lines:
        tg_alog.parse_json(ln)


def main(t):
    up = t.upstream("http").addr
    with t.case("logrotate: rename + SIGUSR1 keeps every line"):
        rotate_case(t, up)
    with t.case("rotations while connections keep closing: every line in one file, whole"):
        rotate_under_load_case(t, up)
    with t.case("a reload: the log carries on; changing access_log is refused"):
        reload_case(t, up)
    with t.case("off writes nothing; an empty block writes to stdout"):
        off_case(t, up)
    with t.case("a file in a directory that does not exist: exit 2, FILE:LINE:COL"):
        config_error_case(t, up)
    for kind in ("fifo", "stdout"):
        with t.case("a destination that never drains (%s): handshakes go on, drops counted"
                    % kind):
            blocked_case(t, up, kind)
    with t.case("a full disk: connections served, lines counted as lost, one warning"):
        disk_full_case(t, up)
    with t.case("SIGTERM right after a burst: every line written"):
        shutdown_flush_case(t, up)


if __name__ == "__main__":
    tglib.run(main, timeout=300)
