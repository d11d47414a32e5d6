#!/usr/bin/env bash
# The floors under issue 15's target 2, HTTP/2 through the proxy: what hyper's HTTP/2 server
# costs alone, and hyper with the least a proxy can do, each against nginx doing the same.
# Four servers, each pinned to the server CPU and loaded in turn by h2load (CONNECTIONS
# connections, H2_STREAMS streams each, as targets 2a and 2b), over TLS (ALPN h2, RSA 2048) and
# in clear (prior knowledge):
#
#   hyper static   `h2-floor`: hyper's HTTP/2 server as Sluice runs it, answering from memory
#   nginx static   nginx's HTTP/2 server, `return 200` with the same body
#   hyper proxy    `h2-floor --upstream`: each stream forwards GET / to the backend on pooled
#                  kept-alive HTTP/1.1 connections, nothing else (no routing, policies, log)
#   nginx proxy    nginx's proxy_pass to the same backend, keepalive 320, no access log
#
# The backend is a separate nginx (`return 200 "ok\n"`) on the server CPU, as in
# bench/proxy-vs-nginx.sh. CPU per request is the server's utime and stime (/proc/PID/stat)
# over a run divided by the requests h2load saw succeed; every run must report the protocol it
# asked for and only 2xx answers. PAIRS rounds of DURATION-second runs after a warm-up, the
# order reversed every other round; the table gives medians.
#
# Needs nginx, h2load (nghttp2-client), openssl and taskset (bench/proxy-vs-nginx.sh MODE=h2
# installs them); builds h2-floor with cargo.
set -euo pipefail

PAIRS=${PAIRS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
H2_STREAMS=${H2_STREAMS:-8}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
BACKEND_PORT=28700
# Ports: hyper static, hyper proxy, nginx static, nginx proxy; TLS, then cleartext.
declare -A PORT=([hyper-static-tls]=28701 [hyper-static-h2c]=28702
	[hyper-proxy-tls]=28703 [hyper-proxy-h2c]=28704 [nginx-static-tls]=28705
	[nginx-static-h2c]=28706 [nginx-proxy-tls]=28707 [nginx-proxy-h2c]=28708)
SERVERS=(hyper-static nginx-static hyper-proxy nginx-proxy)

die() { echo "h2-floor: $*" >&2; exit 1; }
for tool in nginx h2load openssl taskset; do
	command -v $tool >/dev/null || [[ -x /usr/sbin/$tool ]] ||
		die "$tool is missing (bench/proxy-vs-nginx.sh MODE=h2 installs what it needs)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cd "$(dirname "$0")/.."
echo "building h2-floor" >&2
cargo build --release --quiet -p sluice-bench --bin h2-floor
FLOOR_BIN=$(cargo metadata --format-version 1 --no-deps |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/h2-floor

TMP=$(mktemp -d /tmp/h2-floor.XXXXXX)
PIDS=()
cleanup() {
	((${#PIDS[@]})) && kill "${PIDS[@]}" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.example.com \
	-addext subjectAltName=DNS:bench.example.com \
	-keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null

# nginx_conf NAME SERVERS: an nginx instance of one worker under $TMP/NAME.
nginx_conf() {
	mkdir -p "$TMP/$1"
	cat >"$TMP/$1/nginx.conf" <<EOF
user root root;
worker_processes 1;
daemon off;
pid $TMP/$1/nginx.pid;
error_log $TMP/$1/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $TMP/$1;
    proxy_temp_path $TMP/$1;
    fastcgi_temp_path $TMP/$1;
    uwsgi_temp_path $TMP/$1;
    scgi_temp_path $TMP/$1;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    access_log off;
    default_type text/plain;
    ssl_certificate $TMP/tls.crt;
    ssl_certificate_key $TMP/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_buffer_size 4k;
$2
}
EOF
}
nginx_conf backend "    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { return 200 \"ok\\n\"; }
    }"
nginx_conf servers "    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 320;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx-static-tls]} ssl http2 backlog=4096;
        listen 127.0.0.1:${PORT[nginx-static-h2c]} http2 backlog=4096;
        location / { return 200 \"ok\\n\"; }
    }
    server {
        listen 127.0.0.1:${PORT[nginx-proxy-tls]} ssl http2 backlog=4096;
        listen 127.0.0.1:${PORT[nginx-proxy-h2c]} http2 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

declare -A PID
start() { # start NAME COMMAND...: the process's pid in PID[NAME]
	local name=$1
	shift
	taskset -c "$SERVER_CPU" "$@" </dev/null >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	PID[$name]=$!
}
start backend "$NGINX" -p "$TMP/backend" -c "$TMP/backend/nginx.conf"
start nginx "$NGINX" -p "$TMP/servers" -c "$TMP/servers/nginx.conf"
for mode in tls h2c; do
	tls=()
	[[ $mode == tls ]] && tls=(--tls "$TMP/tls.crt" "$TMP/tls.key")
	start "hyper-static-$mode" "$FLOOR_BIN" --port "${PORT[hyper-static-$mode]}" "${tls[@]}"
	start "hyper-proxy-$mode" "$FLOOR_BIN" --port "${PORT[hyper-proxy-$mode]}" "${tls[@]}" \
		--upstream "127.0.0.1:$BACKEND_PORT"
done

url() { # url SERVER MODE
	local scheme=http
	[[ $2 == tls ]] && scheme=https
	echo "$scheme://127.0.0.1:${PORT[$1-$2]}/"
}
# Each is ready when h2load gets a 2xx answer from it.
for key in "${!PORT[@]}"; do
	url=$(url "${key%-*}" "${key##*-}")
	for i in $(seq 100); do
		h2load -n1 -c1 "$url" 2>/dev/null | grep -q '^status codes: 1 2xx' && break
		((i < 100)) || die "no answer from $url (logs in $TMP)"
		sleep 0.1
	done
done
# nginx's workers are their masters' children; the servers' worker is the one measured.
for name in backend nginx; do
	worker=$(pgrep -P "${PID[$name]}")
	taskset -pc "$SERVER_CPU" "$worker" >/dev/null
	PID[$name]=$worker
done

# run SERVER MODE: one h2load run; prints "req/s user-us/req kernel-us/req".
run() {
	local pid=${PID[$1-$2]:-${PID[nginx]}} url protocol=h2 before after out=$TMP/h2load.txt
	url=$(url "$1" "$2")
	[[ $2 == h2c ]] && protocol=h2c
	before=$(awk '{ print $14, $15 }' "/proc/$pid/stat")
	taskset -c "$LOADGEN_CPU" h2load -t1 -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$DURATION" \
		-H ":authority: bench.example.com" "$url" >"$out" 2>&1
	after=$(awk '{ print $14, $15 }' "/proc/$pid/stat")
	grep -q "^Application protocol: $protocol\$" "$out" || die "$url: not $protocol: $(cat "$out")"
	awk -v before="$before" -v after="$after" -v tick="$(getconf CLK_TCK)" '
		/^finished in/ { rps = $4 }
		/^requests:/ { done = $8; bad = $10 + $12 + $14 }
		/^status codes:/ { bad += $5 + $7 + $9 }
		END {
			if (done == 0 || bad > 0) { exit 1 }
			split(before, b); split(after, a)
			printf "%s %.2f %.2f\n", rps, (a[1] - b[1]) * 1e6 / tick / done,
				(a[2] - b[2]) * 1e6 / tick / done
		}' "$out" || die "$url: failed or non-2xx requests: $(cat "$out")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '| mode | server | req/s | user µs/req | kernel µs/req | CPU µs/req |\n|---|---|---|---|---|---|\n'
for mode in tls h2c; do
	echo "$mode: warm-up, then $PAIRS rounds of ${DURATION} s" >&2
	for server in "${SERVERS[@]}"; do
		run "$server" $mode >/dev/null
		: >"$TMP/$server-$mode.runs"
	done
	for round in $(seq "$PAIRS"); do
		order=("${SERVERS[@]}")
		# Reversed every other round, so a drift of the machine favours none.
		((round % 2)) || order=(nginx-proxy hyper-proxy nginx-static hyper-static)
		for server in "${order[@]}"; do
			run "$server" $mode >>"$TMP/$server-$mode.runs"
			echo "  round $round $server: $(tail -1 "$TMP/$server-$mode.runs")" >&2
		done
	done
	for server in "${SERVERS[@]}"; do
		runs=$TMP/$server-$mode.runs
		printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$server" \
			"$(awk '{ print $1 }' "$runs" | median)" "$(awk '{ print $2 }' "$runs" | median)" \
			"$(awk '{ print $3 }' "$runs" | median)" "$(awk '{ print $2 + $3 }' "$runs" | median)"
	done
done
