#!/usr/bin/env bash
# IPv6 end to end: a listener on [::1]:0 and upstreams on [::1], two workers.
#   - `address: "[::1]:PORT"`: curl and openssl s_client through it (TLS 1.2
#     and 1.3), the per-endpoint counter;
#   - `endpoints` with two IPv6 literals, one of them slow (a full listen
#     queue on [::1]: connects time out): every call of `tlsgate bench`
#     against [::1] succeeds, the slow endpoint's timeouts are retried on
#     the other one and it is ejected.
. "$(dirname "$0")/lib.sh"
tg_init 120

command -v curl > /dev/null || tg_skip "curl not installed"
command -v jq > /dev/null || tg_skip "jq not installed"
python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2> /dev/null ||
    tg_skip "no IPv6 loopback here"
read -r CERT KEY < <(tg_cert rsa a.test)
tg_spawn upstream6 "$TLSGATE" bench --serve "[::1]:0"
tg_wait_serving upstream6 "$TG_LAST_PID"
UP6=$UP_ADDR
tg_spawn stall6 python3 -u "$TG_LIB_DIR/tg_upstream.py" stall --listen "[::1]:0"
STALL_PID=$TG_LAST_PID
tg__stall_up() { grep -q 'serving on' "$TG_TMP/stall6.log" || ! tg_alive "$STALL_PID"; }
tg_wait_for 10 "the stalled upstream" tg__stall_up
tg_alive "$STALL_PID" || tg_skip "no slow endpoint on this kernel: $(cat "$TG_TMP/stall6.log")"
STALL6=$(grep -o 'serving on [^ ]*' "$TG_TMP/stall6.log" | awk '{print $3}')

tg_config gw.yaml <<EOF
concurrency: 2
admin: { address: 127.0.0.1:0 }
listeners:
  - name: v6
    address: "[::1]:0"
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
    upstream: { address: "$UP6" }
  - name: v6eps
    address: "[::1]:0"
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
    upstream:
      endpoints: [ { address: "$STALL6" }, { address: "$UP6" } ]
      connect_timeout: 300ms
      outlier_detection: { consecutive_failures: 2, max_ejection_percent: 50 }
EOF
tg_gateway gw.yaml
P=$(tg_listener_port v6)
PE=$(tg_listener_port v6eps)
tg_expect_grep "listener v6: listening on \[::1\]:$P, upstream \[::1\]:" "$GW_LOG" "listener line"

tg_case "curl to [::1], TLS 1.2 and 1.3"
for v in --tlsv1.2 --tlsv1.3; do
    out=$(tg_run 30 curl -sSkg "$v" "https://[::1]:$P/")
    tg_expect_eq "$out" "hello from tlsgate upstream" "curl $v body"
done

tg_case "openssl s_client to [::1]"
for v in -tls1_2 -tls1_3; do
    printf 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n' |
        tg_run 15 openssl s_client -connect "[::1]:$P" -servername a.test -brief -ign_eof "$v" \
            > "$TG_TMP/sc$v.out" 2>&1 || { cat "$TG_TMP/sc$v.out"; tg_fail "s_client $v failed"; }
    tg_expect_grep 'hello from tlsgate upstream' "$TG_TMP/sc$v.out" "s_client $v body"
done
tg_expect_eq "$(tg_stat tlsgate_upstream_endpoint_connections_total listener=v6 "endpoint=$UP6")" 4 \
    "connections to $UP6"

tg_case "two IPv6 endpoints, one slow: tlsgate bench against [::1], no failed call"
tg_run 120 "$TLSGATE" bench -k --quiet -c 4 -n 100 --json "$TG_TMP/b6.json" "https://[::1]:$PE/" \
    > "$TG_TMP/b6.log" 2>&1 || { cat "$TG_TMP/b6.log"; tg_fail "bench failed"; }
tg_expect_eq "$(jq .errors.total "$TG_TMP/b6.json")" 0 "failed calls"
tg_expect_eq "$(jq .ok "$TG_TMP/b6.json")" 100 "calls ok"
tg_expect_eq "$(tg_stat tlsgate_upstream_endpoint_connections_total listener=v6eps "endpoint=$UP6")" 100 \
    "connections to $UP6"
tg_expect_ge "$(tg_stat tlsgate_upstream_endpoint_connect_failures_total listener=v6eps "endpoint=$STALL6" result=timeout)" 2 \
    "timeouts on $STALL6"
tg_expect_eq "$(tg_stat tlsgate_upstream_endpoint_ejected listener=v6eps "endpoint=$STALL6")" 1 \
    "$STALL6 ejected"
tg_expect_ge "$(tg_stat tlsgate_upstream_connect_retries_total)" 2 "retries"

tg_settle
tg_gateway_stop
tg_pass
