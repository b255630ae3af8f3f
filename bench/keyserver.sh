#!/usr/bin/env bash
# bench/keyserver.sh: what the key server costs and buys. The same RSA-2048
# certificate served two ways, side by side in one interleaved run:
#
#   inproc   the gateway signs with cryptomb itself (in-process)
#   split    the gateway holds only the certificate (provider_name:
#            keyserver) and `tlsgate keyserver` signs with cryptomb, for
#            every worker of the gateway at once
#
# at gateway concurrency 1 and 2, under three loads of `tlsgate bench`
# (new TLS 1.3 connection per call): high (-c 64, saturation), -c 8, and -c 1
# (latency). Key exchange (X25519) stays in OpenSSL in both, so cryptomb's
# batch-size histogram counts RSA signatures only and the difference between
# the two is the signing path alone.
#
# Reported per cell (median round by handshakes per CPU-second):
#   hs/s            handshakes per second (the client's count)
#   hs per CPU-s    handshakes per CPU-second of gateway + key server together
#                   (utime + stime of both processes from /proc: the machine
#                   may be shared, CPU time is what this setup used)
#   gw/ks CPU       how that CPU time divides
#   batch           mean RSA signatures per cryptomb batch (tlsgate_keyprov_
#                   batch_size of the process that signs)
#   p50, p99        latency of a whole call (connect, handshake, request)
#
# The servers (gateway and key server) are pinned to one CPU, the client and
# the upstream to the other (TG_KS_BENCH_SERVER_CPU, TG_KS_BENCH_CLIENT_CPU);
# TG_KS_BENCH_PIN=0 pins nothing (every process may run on any CPU).
#
#   bench/keyserver.sh [path/to/tlsgate]
#   TG_KS_BENCH_SECONDS (default 8) per cell, TG_KS_BENCH_ROUNDS (default 3)
#   interleaved rounds, TG_KS_BENCH_HIGH (default 64) connections at high load,
#   TG_KS_BENCH_LOADS (default "high c8 c1") the loads to run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TLSGATE=${1:-${TLSGATE:-$REPO/build/tlsgate}}
export TLSGATE=$(cd "$(dirname "$TLSGATE")" && pwd)/$(basename "$TLSGATE")
[ -x "$TLSGATE" ] || { echo "keyserver.sh: no tlsgate at $TLSGATE (make build)" >&2; exit 1; }
for c in openssl taskset python3; do
    command -v "$c" > /dev/null || { echo "keyserver.sh: missing $c" >&2; exit 1; }
done
exec python3 - <<'PYEOF'
import json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

TLSGATE = os.environ["TLSGATE"]
SECONDS = int(os.environ.get("TG_KS_BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("TG_KS_BENCH_ROUNDS", "3"))
HIGH = int(os.environ.get("TG_KS_BENCH_HIGH", "64"))
PIN = os.environ.get("TG_KS_BENCH_PIN", "1") != "0"
ALL = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
SCPU = os.environ.get("TG_KS_BENCH_SERVER_CPU", "1") if PIN else ALL
CCPU = os.environ.get("TG_KS_BENCH_CLIENT_CPU", "0") if PIN else ALL
LOADS = os.environ.get("TG_KS_BENCH_LOADS", "high c8 c1").split()
TICK = os.sysconf("SC_CLK_TCK")
tmp = tempfile.mkdtemp(prefix="tg-ks-bench-")
procs = []


def die(msg):
    print("keyserver.sh: " + msg, file=sys.stderr)
    sys.exit(1)


def start(name, argv, cpu):
    log = open(os.path.join(tmp, name + ".log"), "wb")
    p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=tmp)
    procs.append(p)
    return p


def logof(name):
    with open(os.path.join(tmp, name + ".log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_log(name, pattern, p, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        m = re.search(pattern, logof(name))
        if m:
            return m
        if p.poll() is not None:
            die("%s exited: %s" % (name, logof(name)[-800:]))
        time.sleep(0.05)
    die("%s: no '%s' after %ds: %s" % (name, pattern, timeout, logof(name)[-800:]))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def stats(port):
    body = urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=10).read().decode()
    out = {}
    for ln in body.splitlines():
        m = re.match(r'tlsgate_keyprov_batch_size_(sum|count)\{provider="cryptomb"\} (\S+)', ln)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


try:
    cert, key = os.path.join(tmp, "rsa.pem"), os.path.join(tmp, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=bench.test",
                    "-newkey", "rsa:2048", "-keyout", key, "-out", cert], check=True,
                   capture_output=True)
    sock = os.path.join(tmp, "keys.sock")
    up = start("upstream", [TLSGATE, "bench", "--serve", "127.0.0.1:0", "--quiet"], CCPU)
    upaddr = wait_log("upstream", r"serving on (\S+)", up).group(1)
    with open(os.path.join(tmp, "ks.yaml"), "w") as f:
        f.write("log_level: warn\nadmin: { address: 127.0.0.1:0 }\n"
                "keyserver: { socket: %s }\nkeys:\n"
                "  - private_key: { filename: %s }\n"
                "    private_key_provider: { provider_name: cryptomb, fallback: false }\n"
                % (sock, key))
    ks = start("ks", [TLSGATE, "keyserver", "--config", "ks.yaml", "--log-level", "info"], SCPU)
    wait_log("ks", r"keyserver ready", ks)
    ks_admin = int(wait_log("ks", r"admin: listening on \S+ \(port (\d+)\)", ks).group(1))

    gws = {}
    for conc in (1, 2):
        for variant in ("inproc", "split"):
            if variant == "inproc":
                prov = ("private_key: { filename: %s }\n"
                        "          private_key_provider: { provider_name: cryptomb, "
                        "fallback: false, typed_config: { key_exchange: false } }" % key)
            else:
                prov = ("private_key_provider: { provider_name: keyserver, typed_config: "
                        "{ socket: %s } }" % sock)
            name = "%s-%d" % (variant, conc)
            with open(os.path.join(tmp, name + ".yaml"), "w") as f:
                f.write("concurrency: %d\nlog_level: warn\nadmin: { address: 127.0.0.1:0 }\n"
                        "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    tls:\n"
                        "      certificates:\n        - certificate_chain: { filename: %s }\n"
                        "          %s\n    upstream: { address: %s }\n"
                        % (conc, cert, prov, upaddr))
            p = start(name, [TLSGATE, "run", "--config", name + ".yaml", "--log-level", "info"],
                      SCPU)
            wait_log(name, r"ready", p)
            port = int(wait_log(name, r"listening on [^ ]*:(\d+),", p).group(1))
            admin = int(wait_log(name, r"admin: listening on \S+ \(port (\d+)\)", p).group(1))
            gws[(variant, conc)] = (p, port, admin)
    ks_holds = re.search(r"cryptomb", logof("ks")) is not None

    loads = [(n, c) for n, c in (("high", HIGH), ("c8", 8), ("c1", 1)) if n in LOADS]
    results = {}
    load0 = open("/proc/loadavg").read().split()[:3]
    for r in range(ROUNDS):
        for lname, conns in loads:
            for conc in (1, 2):
                for variant in ("inproc", "split"):
                    p, port, admin = gws[(variant, conc)]
                    out = os.path.join(tmp, "r.json")
                    signer = ks_admin if variant == "split" else admin
                    pids = [p.pid] + ([ks.pid] if variant == "split" else [])
                    # A short warm-up run first (connections, pools, caches).
                    subprocess.run(["taskset", "-c", CCPU, TLSGATE, "bench", "-k", "--quiet",
                                    "--tls-version", "1.3", "-c", str(conns), "-t", "1s",
                                    "https://127.0.0.1:%d/" % port], capture_output=True)
                    b0, t0 = stats(signer), [cpu_ticks(x) for x in pids]
                    subprocess.run(["taskset", "-c", CCPU, TLSGATE, "bench", "-k", "--quiet",
                                    "--tls-version", "1.3", "-c", str(conns), "-t",
                                    "%ds" % SECONDS, "--json", out,
                                    "https://127.0.0.1:%d/" % port], capture_output=True)
                    b1, t1 = stats(signer), [cpu_ticks(x) for x in pids]
                    with open(out) as f:
                        rep = json.load(f)
                    cpu = [(b - a) / TICK for a, b in zip(t0, t1)]
                    n = rep["handshakes"]["full"] if "full" in rep["handshakes"] else rep["ok"]
                    batches = b1.get("count", 0) - b0.get("count", 0)
                    ops = b1.get("sum", 0) - b0.get("sum", 0)
                    results.setdefault((lname, conc, variant), []).append({
                        "hs": rep["handshakes"]["per_second"],
                        "per_cpu": n / sum(cpu) if sum(cpu) > 0 else 0.0,
                        "cpu_gw": cpu[0], "cpu_ks": cpu[1] if len(cpu) > 1 else 0.0,
                        "batch": ops / batches if batches else 0.0,
                        "p50": rep["latency_ms"]["p50"], "p99": rep["latency_ms"]["p99"],
                        "errors": rep["calls"] - rep["ok"],
                    })
    load1 = open("/proc/loadavg").read().split()[:3]

    model = [ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if ln.startswith("Model name")]
    print("# %s, %d CPUs; load average %s before, %s after" % (
        model[0] if model else "unknown CPU", os.cpu_count(), " ".join(load0), " ".join(load1)))
    print("# gateway and key server on CPU %s, client and upstream on CPU %s; tlsgate bench -k "
          "--tls-version 1.3 -c C -t %ds (1 s warm-up first), new connection per call;"
          % (SCPU, CCPU, SECONDS) if PIN else
          "# nothing pinned (every process on any CPU); tlsgate bench -k --tls-version 1.3 -c C "
          "-t %ds (1 s warm-up first), new connection per call;" % SECONDS)
    print("# RSA-2048 signatures with cryptomb, X25519 in OpenSSL; %d interleaved rounds, "
          "the median round (by hs per CPU-s) shown" % ROUNDS)
    print()
    print("| workers | load | signing | hs/s | hs per CPU-s (gw+ks) | split / inproc | "
          "CPU s gw / ks | RSA batch | p50 ms | p99 ms | errors |")
    print("|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for lname, conns in loads:
        for conc in (1, 2):
            med = {}
            for variant in ("inproc", "split"):
                runs = sorted(results[(lname, conc, variant)], key=lambda d: d["per_cpu"])
                med[variant] = runs[len(runs) // 2]
                med[variant]["err_all"] = sum(x["errors"] for x in runs)
            for variant in ("inproc", "split"):
                d = med[variant]
                ratio = d["per_cpu"] / med["inproc"]["per_cpu"] if med["inproc"]["per_cpu"] else 0
                label = {"high": "-c %d" % HIGH, "c8": "-c 8", "c1": "-c 1"}[lname]
                print("| %d | %s | %s | %.0f | %.0f | %s | %.2f / %.2f | %.2f | %.2f | %.2f | %d |"
                      % (conc, label, "in-process cryptomb" if variant == "inproc"
                         else "key server (cryptomb)", d["hs"], d["per_cpu"],
                         "%.2f" % ratio if variant == "split" else "1", d["cpu_gw"], d["cpu_ks"],
                         d["batch"], d["p50"], d["p99"], d["err_all"]))
finally:
    cleanup()
PYEOF
