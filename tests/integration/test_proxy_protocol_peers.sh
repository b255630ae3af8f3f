#!/usr/bin/env bash
# PROXY protocol with real peers, IPv4 and IPv6, with curl and openssl s_client.
#
#   client (curl --interface 127.0.0.2, or ::1)
#     -> [nginx stream `proxy_protocol on` (v1) | haproxy `send-proxy` (v1) /
#         `send-proxy-v2` (v2)]                         the load balancer
#     -> tlsgate, listener with proxy_protocol: true    reads the header
#     -> haproxy `bind ... accept-proxy`, mode http     the upstream
#
# The upstream haproxy answers every request with what it saw of the client
# (`src`, `src_port`, `dst`, `dst_port`, `fc_rcvd_proxy`, `fc_pp_authority`)
# and logs the same. Without the PROXY protocol it would see tlsgate at
# 127.0.0.1 (or ::1) from an ephemeral port; with it, the test's client:
# 127.0.0.2 (or ::1) and curl's own local port, the address the client
# connected to (the balancer's), and for v2 the SNI as AUTHORITY. tlsgate's
# debug log names the same client. Directly connected clients (no balancer)
# reach haproxy the same way through listeners without proxy_protocol. A
# client speaking TLS straight to a proxy_protocol listener is refused and
# counted.
. "$(dirname "$0")/lib.sh"
tg_init 120

command -v haproxy > /dev/null || tg_skip "haproxy not installed (scripts/setup.sh)"
command -v nginx > /dev/null || tg_skip "nginx not installed (scripts/setup.sh)"
NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
[ -e "$NGINX_STREAM" ] || tg_skip "nginx stream module not installed (libnginx-mod-stream)"
grep -q '^0\{31\}1 .* lo$' /proc/net/if_inet6 2> /dev/null || tg_fail "no IPv6 loopback (::1)"

read -r CERT KEY < <(tg_cert rsa a.test)
for v in APP4 APP6 LB1 LB2 LB6 NG4 NG6; do
    tg_free_port
    printf -v "$v" '%s' "$FREE_PORT"
done

TG_LOG_LEVEL=debug
tg_config gw.yaml << EOF
admin: { address: 127.0.0.1:0 }
listeners:
  - name: direct4
    address: 127.0.0.1:0
    tls: { certificates: [ { certificate_chain: { filename: $CERT }, private_key: { filename: $KEY } } ], alpn: [http/1.1] }
    upstream: { address: 127.0.0.1:$APP4, proxy_protocol: v1 }
  - name: direct6
    address: "[::1]:0"
    tls: { certificates: [ { certificate_chain: { filename: $CERT }, private_key: { filename: $KEY } } ], alpn: [http/1.1] }
    upstream: { address: "[::1]:$APP6", proxy_protocol: v2 }
  - name: behind4
    address: 127.0.0.1:0
    proxy_protocol: true
    tls: { certificates: [ { certificate_chain: { filename: $CERT }, private_key: { filename: $KEY } } ], alpn: [http/1.1] }
    upstream: { address: 127.0.0.1:$APP4, proxy_protocol: v2 }
  - name: behind6
    address: "[::1]:0"
    proxy_protocol: true
    tls: { certificates: [ { certificate_chain: { filename: $CERT }, private_key: { filename: $KEY } } ], alpn: [http/1.1] }
    upstream: { address: "[::1]:$APP6", proxy_protocol: v1 }
EOF
tg_gateway gw.yaml
DIRECT4=$(tg_listener_port direct4)
DIRECT6=$(tg_listener_port direct6)
BEHIND4=$(tg_listener_port behind4)
BEHIND6=$(tg_listener_port behind6)

# haproxy: the upstream (frontends app4/app6) and a load balancer (lb1, lb2, lb6).
tg_config haproxy.cfg << EOF
global
    log stderr format raw local0 info
defaults
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend app4
    mode http
    bind 127.0.0.1:$APP4 accept-proxy
    bind [::1]:$APP6 accept-proxy
    log-format "app saw src=%ci:%cp dst=%fi:%fp proxy=%[fc_rcvd_proxy] authority=%[fc_pp_authority]"
    http-request return status 200 content-type text/plain lf-string "src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port] proxy=%[fc_rcvd_proxy] authority=%[fc_pp_authority]\n"
frontend lb1
    mode tcp
    bind 127.0.0.1:$LB1
    default_backend tlsgate_v1
frontend lb2
    mode tcp
    bind 127.0.0.1:$LB2
    default_backend tlsgate_v2
frontend lb6
    mode tcp
    bind [::1]:$LB6
    default_backend tlsgate_v2_ipv6
backend tlsgate_v1
    mode tcp
    server tg 127.0.0.1:$BEHIND4 send-proxy
backend tlsgate_v2
    mode tcp
    server tg 127.0.0.1:$BEHIND4 send-proxy-v2
backend tlsgate_v2_ipv6
    mode tcp
    server tg [::1]:$BEHIND6 send-proxy-v2
EOF
tg_spawn haproxy haproxy -db -f "$TG_TMP/haproxy.cfg"
HAPROXY_PID=$TG_LAST_PID
tg_wait_listening haproxy "$HAPROXY_PID" "$APP4" "$APP6" "$LB1" "$LB2" "$LB6"

# nginx: a load balancer sending v1, one process, everything in the temp dir.
mkdir -p "$TG_TMP/nginx"
tg_config nginx.conf << EOF
load_module $NGINX_STREAM;
daemon off;
master_process off;
worker_processes 1;
pid $TG_TMP/nginx/nginx.pid;
error_log $TG_TMP/nginx/error.log info;
events { worker_connections 64; }
stream {
    server {
        listen 127.0.0.1:$NG4;
        proxy_pass 127.0.0.1:$BEHIND4;
        proxy_protocol on;
    }
    server {
        listen [::1]:$NG6;
        proxy_pass [::1]:$BEHIND6;
        proxy_protocol on;
    }
}
EOF
tg_spawn nginx nginx -p "$TG_TMP/nginx/" -e "$TG_TMP/nginx/error.log" -c "$TG_TMP/nginx.conf"
NGINX_PID=$TG_LAST_PID
tg_wait_listening nginx "$NGINX_PID" "$NG4" "$NG6"

OUT=$TG_TMP/out

# get FAMILY PORT [curl args]: curl https://a.test:PORT/ from 127.0.0.2 (4) or
# ::1 (6); sets BODY (haproxy's line) and LPORT (curl's local port).
get() {
    local fam=$1 port=$2 ip=127.0.0.1 src=(--interface 127.0.0.2)
    shift 2
    if [ "$fam" = 6 ]; then ip='[::1]'; src=(-6); fi
    tg_run 15 curl -sS -k "${src[@]}" --resolve "a.test:$port:$ip" \
        -w 'local %{local_ip} %{local_port}\n' "$@" "https://a.test:$port/" > "$OUT" 2>&1 ||
        { cat "$OUT"; tg_fail "curl to port $port failed"; }
    BODY=$(grep '^src=' "$OUT" || true)
    LPORT=$(sed -n 's/^local .* \([0-9]*\)$/\1/p' "$OUT")
    [ -n "$BODY" ] && [ -n "$LPORT" ] || { cat "$OUT"; tg_fail "no answer from haproxy"; }
}

tg_case "direct, IPv4, curl: tlsgate sends v1, haproxy sees the client"
get 4 "$DIRECT4"
tg_expect_eq "$BODY" "src=127.0.0.2 sport=$LPORT dst=127.0.0.1 dport=$DIRECT4 proxy=1 authority=" "haproxy saw"
tg_expect_grep "conn 0x[0-9a-f]*: accepted from 127\.0\.0\.2:$LPORT on listener direct4" "$GW_LOG" "tlsgate's log"

tg_case "direct, IPv6, curl: tlsgate sends v2 over IPv6 (TCP6), AUTHORITY = SNI"
get 6 "$DIRECT6"
tg_expect_eq "$BODY" "src=::1 sport=$LPORT dst=::1 dport=$DIRECT6 proxy=1 authority=a.test" "haproxy saw"
tg_expect_grep "accepted from \[::1\]:$LPORT on listener direct6" "$GW_LOG" "tlsgate's log"

tg_case "direct, IPv6, openssl s_client"
printf 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n' |
    tg_run 15 openssl s_client -connect "[::1]:$DIRECT6" -servername a.test -ign_eof > "$OUT" 2>&1 ||
    { cat "$OUT"; tg_fail "s_client over IPv6 failed"; }
tg_expect_grep "^src=::1 sport=[0-9]+ dst=::1 dport=$DIRECT6 proxy=1 authority=a.test$" "$OUT" "haproxy saw"

tg_case "nginx (v1) -> tlsgate -> haproxy (v2), IPv4"
get 4 "$NG4"
tg_expect_eq "$BODY" "src=127.0.0.2 sport=$LPORT dst=127.0.0.1 dport=$NG4 proxy=1 authority=a.test" "haproxy saw"
tg_expect_grep "PROXY v1 header: client 127\.0\.0\.2:$LPORT, to 127\.0\.0\.1:$NG4" "$GW_LOG" "tlsgate's log"

tg_case "nginx (v1 TCP6) -> tlsgate -> haproxy (v1 TCP6), IPv6"
get 6 "$NG6"
tg_expect_eq "$BODY" "src=::1 sport=$LPORT dst=::1 dport=$NG6 proxy=1 authority=" "haproxy saw"
tg_expect_grep "PROXY v1 header: client \[::1\]:$LPORT, to \[::1\]:$NG6" "$GW_LOG" "tlsgate's log"

tg_case "haproxy send-proxy-v2 -> tlsgate -> haproxy (v2), IPv4"
get 4 "$LB2"
tg_expect_eq "$BODY" "src=127.0.0.2 sport=$LPORT dst=127.0.0.1 dport=$LB2 proxy=1 authority=a.test" "haproxy saw"
tg_expect_grep "PROXY v2 header: client 127\.0\.0\.2:$LPORT, to 127\.0\.0\.1:$LB2" "$GW_LOG" "tlsgate's log"
tg_expect_grep "app saw src=127\.0\.0\.2:$LPORT dst=127\.0\.0\.1:$LB2 proxy=1 authority=a\.test" \
    "$TG_TMP/haproxy.log" "haproxy's log"

tg_case "haproxy send-proxy (v1) -> tlsgate -> haproxy (v2), IPv4"
get 4 "$LB1"
tg_expect_eq "$BODY" "src=127.0.0.2 sport=$LPORT dst=127.0.0.1 dport=$LB1 proxy=1 authority=a.test" "haproxy saw"

tg_case "haproxy send-proxy-v2 -> tlsgate -> haproxy (v1), IPv6"
get 6 "$LB6"
tg_expect_eq "$BODY" "src=::1 sport=$LPORT dst=::1 dport=$LB6 proxy=1 authority=" "haproxy saw"
tg_expect_grep "PROXY v2 header: client \[::1\]:$LPORT, to \[::1\]:$LB6" "$GW_LOG" "tlsgate's log"
tg_expect_grep "app saw src=::1:$LPORT dst=::1:$LB6 proxy=1" "$TG_TMP/haproxy.log" "haproxy's log"

tg_case "TLS straight to a proxy_protocol listener is refused (curl, s_client)"
! tg_run 15 curl -sS -k "https://127.0.0.1:$BEHIND4/" > "$OUT" 2>&1 || tg_fail "curl without a balancer got through"
! printf '' | tg_run 15 openssl s_client -connect "[::1]:$BEHIND6" > "$OUT" 2>&1 ||
    tg_expect_nogrep '^Verify return code|^SSL-Session' "$OUT" "s_client without a balancer"

tg_case "/stats"
tg_settle
tg_expect_eq "$(tg_stat tlsgate_proxy_protocol_headers_total version=1)" 3 "v1 headers (nginx x2, haproxy send-proxy)"
tg_expect_eq "$(tg_stat tlsgate_proxy_protocol_headers_total version=2)" 2 "v2 headers (haproxy send-proxy-v2 x2)"
tg_expect_eq "$(tg_stat tlsgate_proxy_protocol_errors_total reason=not_proxy)" 2 "refused: no header"
tg_expect_eq "$(tg_stat tlsgate_proxy_protocol_errors_total)" 2 "no other PROXY protocol error"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" 8 "handshakes"
tg_expect_eq "$(tg_stat tlsgate_connections_closed_total reason=proxy_protocol)" 2 "closed for the header"
tg_expect_nogrep 'invalid PROXY protocol header|ALERT' "$TG_TMP/haproxy.log" "haproxy refused no header"

tg_gateway_stop
tg_pass
