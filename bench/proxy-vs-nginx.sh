#!/usr/bin/env bash
# Throughput of `sluice serve --workers 1` against nginx as a reverse proxy (1 worker, upstream
# keep-alive), both in front of the same backend (nginx `return 200` with a tiny body), measured
# as shared/docs/performance.md prescribes for a 2-core machine:
#
#   - wrk on CPU 0 (taskset -c 0 wrk -t1 -c64 --latency); backend and proxy under test on CPU 1
#     (nginx workers are re-pinned with taskset -pc after start-up);
#   - warm-up, then pairs alternating A B, B A, ...; the figure is the median of the per-pair
#     ratios sluice/nginx, so slow drift and order effects cancel;
#   - CPU time per request of each proxy: utime+stime from /proc/<pid>/stat of all its
#     processes (every thread is counted), before and after each run, over requests served;
#   - the backend alone (wrk straight at it) is the physical limit: a free proxy would reach it.
#   - Two identical nginx proxies differ by about ±10% measured this way: smaller differences
#     mean nothing.
#
# Eight modes (MODE):
#   http        plain HTTP/1.1 over kept-alive connections (the default)
#   policies    the same, to a route with the policies of issue 11 that most Ingresses carry:
#               three response headers (Sluice: `custom-headers`; nginx: `add_header`), the
#               upstream Host (`upstream-vhost`; `proxy_set_header Host`) and cookie affinity
#               (`affinity: cookie`; an upstream `hash $cookie_INGRESSCOOKIE consistent`), every
#               request carrying the session cookie
#   access      the same, to a route with the access control of issue 12: basic authentication
#               (a {SHA} htpasswd entry; bcrypt costs what it costs in both), CORS, a request
#               rate limit high enough never to refuse, and an address allow list (Sluice:
#               `auth-type: basic`, `enable-cors`, `limit-rps`, `whitelist-source-range`;
#               nginx: `auth_basic`, `add_header`, `limit_req`, `allow`/`deny`), every request
#               carrying the credentials
#   post        the same with a POST of BODY_SIZE bytes per request (wrk -s, a Content-Length
#               body): the body path. Both proxies buffer the request body before sending it
#               on (ingress-nginx's proxy-request-buffering on): nginx in client_body_buffer_size
#               (8k, ingress-nginx's client-body-buffer-size) and a temporary file beyond it,
#               Sluice in memory (a body within client-body-buffer-size on its fast path, a
#               larger one on the general path)
#   h2          HTTP/2 over cleartext with prior knowledge (h2c): h2load (nghttp2-client) with
#               CONNECTIONS connections and H2_STREAMS concurrent streams each, against Sluice's
#               HTTP port (which detects the HTTP/2 preface) and an nginx `listen ... http2`
#               cleartext port (NGINX_H2_PORT: nginx 1.22 serves h2c with prior knowledge only
#               there); both proxies still talk HTTP/1.1 to the backend. Latency percentiles
#               come from h2load's per-request log (--log-file); the backend-alone rows use wrk
#               (the backend speaks HTTP/1.1 only)
#   https       the same over kept-alive TLS connections: wrk to the HTTPS port; both proxies
#               terminate TLS with the same certificate (in Sluice, a kubernetes.io/tls Secret
#               and an Ingress tls section; in nginx, ingress-nginx's TLS defaults)
#   h2tls       HTTP/2 over TLS as a browser speaks it: h2load with ALPN h2, CONNECTIONS
#               connections of H2_STREAMS (8) concurrent streams each, against Sluice's HTTPS
#               port and an nginx `listen ... ssl http2` port, the same certificate as https
#               (KEY_TYPE); the script checks that ALPN negotiated h2 with both (openssl s_client
#               -alpn h2, and h2load's own report of every run)
#   handshakes  new TLS connections per second: `openssl s_time -new` (HANDSHAKE_CLIENTS client
#               processes on the load generator's CPU, a full handshake per connection, no
#               resumption, no request), against the same two servers; the backend is not involved
#
# Usage: bench/proxy-vs-nginx.sh            (5 pairs of 10 s runs: about 3 minutes)
#        DURATION=3 PAIRS=1 bench/proxy-vs-nginx.sh   (a quick check that it works)
#        MODE=https bench/proxy-vs-nginx.sh; MODE=handshakes bench/proxy-vs-nginx.sh
#        MODE=h2 bench/proxy-vs-nginx.sh; MODE=h2tls KEY_TYPE=ecdsa bench/proxy-vs-nginx.sh
#
# Environment (defaults in brackets):
#   MODE [http]         http, policies, access, post, https, h2tls, handshakes or h2 (above)
#   BODY_SIZE [1024]    bytes of each request body in post mode
#   KEY_TYPE [rsa]      the certificate's key in the TLS modes: rsa (2048 bits, what most
#                       ingress certificates and ingress-nginx's fake certificate use) or ecdsa
#                       (P-256)
#   H2_STREAMS [1; 8 in h2tls] concurrent streams per connection in the h2 and h2tls modes
#                       (h2load -m); 1 keeps the same number of requests in flight as wrk's
#                       CONNECTIONS, 8 is a browser's page load on one connection
#   HANDSHAKE_CLIENTS [4] concurrent `openssl s_time` processes in handshakes mode (one alone
#                       waits for each handshake and leaves the server idle half of the time)
#   DURATION [10]       seconds per measured run
#   PAIRS [5]           pairs of runs (nginx then sluice, then sluice then nginx, ...)
#   WARMUP [3]          seconds of warm-up for each server before measuring
#   CONNECTIONS [64]    wrk connections (one wrk thread)
#   LOADGEN_CPU [0]     CPU for wrk
#   SERVER_CPU [1]      CPU for the backend and both proxies
#   ACCESS_LOG [on]     on: nginx writes an access log line per request in ingress-nginx's
#                       upstreaminfo format, buffered (64k), to /dev/null, as Sluice does (Sluice
#                       always logs each request to stdout, batched by a thread; this script sends
#                       its stdout to /dev/null). off: nginx logs nothing (Sluice still does).
#   QUIET_WAIT [300]    seconds to wait for running cargo/rustc processes to finish before
#                       measuring (they share the CPUs and spoil the figures); then go on anyway,
#                       with a warning in the results
#   SLUICE_BIN []       a sluice binary to use instead of building with cargo build --release
#   BACKEND_PORT [28480] NGINX_PORT [28481] SLUICE_PORT [28482] SLUICE_ADMIN_PORT [28483]
#   NGINX_TLS_PORT [28484] SLUICE_TLS_PORT [28485] NGINX_H2_PORT [28486]
#   KEEP_TMP [0]        1 keeps the temporary directory (configs, logs, wrk outputs)
#   PROFILE [0]         1 adds, after the pairs, one more run of each proxy under strace -c (system
#                       calls per request), with nstat (TCP segments and pure ACKs per request),
#                       and one under perf record -e cpu-clock (kernel share of the CPU samples,
#                       top symbols), and a section with those to the results; installs strace,
#                       linux-perf and iproute2 when missing. strace slows the proxy, so the
#                       profiled runs are left out of every other figure (not with handshakes)
#
# Needs nginx, wrk, taskset, curl and openssl (and h2load in the h2 modes); installs what is missing with apt-get (as root, or
# through sudo).
set -euo pipefail

MODE=${MODE:-http}
KEY_TYPE=${KEY_TYPE:-rsa}
HANDSHAKE_CLIENTS=${HANDSHAKE_CLIENTS:-4}
H2_STREAMS=${H2_STREAMS:-$([[ $MODE == h2tls ]] && echo 8 || echo 1)}
BODY_SIZE=${BODY_SIZE:-1024}
DURATION=${DURATION:-10}
PAIRS=${PAIRS:-5}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
ACCESS_LOG=${ACCESS_LOG:-on}
QUIET_WAIT=${QUIET_WAIT:-300}
SLUICE_BIN=${SLUICE_BIN:-}
BACKEND_PORT=${BACKEND_PORT:-28480}
NGINX_PORT=${NGINX_PORT:-28481}
SLUICE_PORT=${SLUICE_PORT:-28482}
SLUICE_ADMIN_PORT=${SLUICE_ADMIN_PORT:-28483}
NGINX_TLS_PORT=${NGINX_TLS_PORT:-28484}
SLUICE_TLS_PORT=${SLUICE_TLS_PORT:-28485}
NGINX_H2_PORT=${NGINX_H2_PORT:-28486}
KEEP_TMP=${KEEP_TMP:-0}
PROFILE=${PROFILE:-0}

HOST_HEADER=bench.example.com
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLK_TCK=$(getconf CLK_TCK)

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

for v in HANDSHAKE_CLIENTS H2_STREAMS BODY_SIZE DURATION PAIRS WARMUP CONNECTIONS LOADGEN_CPU SERVER_CPU QUIET_WAIT \
	BACKEND_PORT NGINX_PORT SLUICE_PORT SLUICE_ADMIN_PORT NGINX_TLS_PORT SLUICE_TLS_PORT NGINX_H2_PORT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((PAIRS >= 1)) || die "PAIRS must be at least 1"
((DURATION >= 1)) || die "DURATION must be at least 1"
[[ $ACCESS_LOG == on || $ACCESS_LOG == off ]] || die "ACCESS_LOG must be on or off"
((H2_STREAMS >= 1)) || die "H2_STREAMS must be at least 1"
case $MODE in
http | policies | access | post | https | h2tls | handshakes | h2) ;;
*) die "MODE must be http, policies, access, post, https, h2tls, handshakes or h2" ;;
esac
((BODY_SIZE >= 1 && BODY_SIZE <= 1048576)) || die "BODY_SIZE must be from 1 to 1048576 (proxy-body-size, 1m)"
POLICIES=0
[[ $MODE == policies ]] && POLICIES=1
ACCESS=0
[[ $MODE == access ]] && ACCESS=1
# MODE=access: the user and password every request carries, and its {SHA} htpasswd line.
ACCESS_USER=bench
ACCESS_PASSWORD=bench-password
ACCESS_CREDENTIALS=$(printf '%s:%s' "$ACCESS_USER" "$ACCESS_PASSWORD" | base64 -w0)
# What the readiness checks send: the credentials, in MODE=access.
READY_AUTH=()
((ACCESS)) && READY_AUTH=(-H "Authorization: Basic $ACCESS_CREDENTIALS")
# The session cookie of MODE=policies: a key placed on the ring, and a backend key (any: only
# the key picks the endpoint).
SESSION_COOKIE="INGRESSCOOKIE=5f1c0ffee|bench"
[[ $KEY_TYPE == rsa || $KEY_TYPE == ecdsa ]] || die "KEY_TYPE must be rsa or ecdsa"
TLS=0
[[ $MODE == https || $MODE == h2tls || $MODE == handshakes ]] && TLS=1
# The modes h2load drives (HTTP/2, with prior knowledge or over TLS with ALPN).
H2LOAD=0
[[ $MODE == h2 || $MODE == h2tls ]] && H2LOAD=1
# curl's options to reach a proxy in this mode (nginx's h2c port speaks nothing but HTTP/2).
CURL_PROTO=()
[[ $MODE == h2 ]] && CURL_PROTO=(--http2-prior-knowledge)
[[ $MODE == h2tls ]] && CURL_PROTO=(--http2)

# --- tools -------------------------------------------------------------------------------------

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "cannot run '$*': not root and no sudo"
	fi
}

# The Debian package that provides nginx here: `nginx` (bookworm and later), else the older
# `nginx-light` flavour.
nginx_package() {
	local p candidate
	for p in nginx nginx-light; do
		candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
		if [[ -n $candidate && $candidate != "(none)" ]]; then
			echo "$p"
			return
		fi
	done
	die "neither nginx nor nginx-light is available from apt"
}

install_missing() {
	local missing=() need_update=1
	command -v wrk >/dev/null || missing+=(wrk)
	command -v taskset >/dev/null || missing+=(util-linux)
	command -v curl >/dev/null || missing+=(curl)
	command -v openssl >/dev/null || missing+=(openssl)
	if ((H2LOAD)); then
		command -v h2load >/dev/null || missing+=(nghttp2-client)
	fi
	if ((PROFILE)); then
		command -v strace >/dev/null || missing+=(strace)
		command -v perf >/dev/null || missing+=(linux-perf)
		command -v nstat >/dev/null || missing+=(iproute2)
	fi
	if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
		# apt-cache needs the package lists.
		as_root apt-get update -qq
		need_update=0
		missing+=("$(nginx_package)")
	fi
	((${#missing[@]} == 0)) && return
	log "installing ${missing[*]}"
	((need_update)) && as_root apt-get update -qq
	# Debian's nginx package may try to start the system service; policy-rc.d usually stops
	# that in containers. It is not used here either way.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found after installing it"
((SERVER_CPU < $(nproc) && LOADGEN_CPU < $(nproc))) ||
	die "CPUs $LOADGEN_CPU and $SERVER_CPU needed, $(nproc) online"

if [[ -z $SLUICE_BIN ]]; then
	log "building sluice (cargo build --release -p sluice)"
	(cd "$ROOT" && cargo build --release -p sluice)
	SLUICE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice
fi
[[ -x $SLUICE_BIN ]] || die "no sluice binary at $SLUICE_BIN"

# --- processes and clean-up ---------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-vs-nginx.XXXXXX")
STARTED=() # pids of the servers this script started

cleanup() {
	local pid
	for pid in "${STARTED[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP_TMP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$BACKEND_PORT" "$NGINX_PORT" "$SLUICE_PORT" "$SLUICE_ADMIN_PORT" "$NGINX_TLS_PORT" "$SLUICE_TLS_PORT" "$NGINX_H2_PORT"; do
	port_free "$p" || die "port $p is in use (set BACKEND_PORT, NGINX_PORT, SLUICE_PORT, SLUICE_ADMIN_PORT, NGINX_TLS_PORT, SLUICE_TLS_PORT, NGINX_H2_PORT)"
done

# Waits until `curl ARGS...` succeeds (up to 10 s).
wait_for() {
	local i
	for ((i = 0; i < 100; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$@" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# The pid and the child pids of a master process: an nginx master and its workers.
family() {
	echo "$1"
	pgrep -P "$1" || true
}

# "utime stime", in clock ticks, of the processes given (every thread of each is included).
cpu_split() {
	local pid u=0 k=0 a b
	for pid in "$@"; do
		# Fields after "pid (comm) ": state is 1st, utime 12th, stime 13th.
		read -r a b < <(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12, $13 }')
		u=$((u + a)) k=$((k + b))
	done
	echo "$u $k"
}

# utime+stime, in clock ticks, of the processes given.
cpu_ticks() {
	local u k
	read -r u k < <(cpu_split "$@")
	echo $((u + k))
}

# nginx config shared by the backend and the proxy: everything in $1, nothing in /var.
nginx_common() {
	local dir=$1
	mkdir -p "$dir"
	if ((EUID == 0)); then
		# Workers run as the current user, not as nobody.
		echo "user $(id -un) $(id -gn);"
	fi
	cat <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {
	local dir=$1
	cat <<EOF
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    # ingress-nginx's client-body-buffer-size: a larger request body goes to a temporary file.
    client_body_buffer_size 8k;
    # Clients keep their connections for the whole run, whichever proxy they talk to.
    keepalive_requests 10000000;
    keepalive_timeout 120s;
EOF
}

write_backend_conf() {
	local dir=$TMP/backend
	{
		nginx_common "$dir"
		cat <<EOF
http {
$(nginx_http_common "$dir")
    access_log off;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
	} >"$dir/nginx.conf"
}

# The certificate both proxies serve, for $HOST_HEADER (self-signed: clients do not verify).
write_certificate() {
	local dir=$TMP/tls key
	mkdir -p "$dir"
	case $KEY_TYPE in
	rsa) key=(-newkey rsa:2048) ;;
	ecdsa) key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
	esac
	openssl req -x509 "${key[@]}" -nodes -days 30 -subj "/CN=$HOST_HEADER" \
		-addext "subjectAltName=DNS:$HOST_HEADER" -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
}

# ingress-nginx's TLS server settings (its ConfigMap defaults), on NGINX_TLS_PORT.
nginx_tls_server() {
	((TLS)) || return 0
	cat <<EOF
        listen 127.0.0.1:$NGINX_TLS_PORT ssl$([[ $MODE == h2tls ]] && echo ' http2') backlog=4096;
        ssl_certificate $TMP/tls/tls.crt;
        ssl_certificate_key $TMP/tls/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384';
        ssl_prefer_server_ciphers on;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 10m;
        ssl_session_tickets off;
        ssl_buffer_size 4k;
        ssl_ecdh_curve auto;
        # HSTS on HTTPS responses, as both ingress-nginx and Sluice send by default.
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
EOF
}

# A cleartext HTTP/2 port (prior knowledge, no upgrade) for the h2 mode.
nginx_h2_server() {
	[[ $MODE == h2 ]] || return 0
	echo "        listen 127.0.0.1:$NGINX_H2_PORT http2 backlog=4096;"
}

write_proxy_conf() {
	local dir=$TMP/nginx access
	if [[ $ACCESS_LOG == on ]]; then
		access="access_log /dev/null upstreaminfo buffer=64k flush=1s;"
	else
		access="access_log off;"
	fi
	{
		nginx_common "$dir"
		cat <<EOF
http {
$(nginx_http_common "$dir")
    # ingress-nginx's default log format; the upstream names are fixed strings here.
    log_format upstreaminfo '\$remote_addr - \$remote_user [\$time_local] "\$request" '
        '\$status \$body_bytes_sent "\$http_referer" "\$http_user_agent" '
        '\$request_length \$request_time [default-backend-80] [] \$upstream_addr '
        '\$upstream_response_length \$upstream_response_time \$upstream_status \$request_id';
    $access
$( ((ACCESS)) && echo '    limit_req_zone $binary_remote_addr zone=bench:5m rate=100000r/s;')
    upstream backend {
$( ((POLICIES)) && echo '        hash $cookie_INGRESSCOOKIE consistent;')
        server 127.0.0.1:$BACKEND_PORT;
        # ingress-nginx's upstream-keepalive-connections, as Sluice's default: with HTTP/2's
        # CONNECTIONS x H2_STREAMS requests in flight, a smaller pool would make nginx open and
        # close upstream connections all the time.
        keepalive 320;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
$(nginx_tls_server)
$(nginx_h2_server)
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The request headers ingress-nginx sets (Sluice sets the same).
            proxy_set_header Host $(if ((POLICIES)); then echo internal.example; else echo '$host'; fi);
$(nginx_policies)
$(nginx_access "$dir")
            proxy_set_header X-Request-ID \$request_id;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Scheme \$scheme;
            proxy_set_header X-Scheme \$scheme;
        }
    }
}
EOF
	} >"$dir/nginx.conf"
}

# MODE=policies: the response headers nginx adds (Sluice's custom-headers ConfigMap holds the
# same three).
nginx_policies() {
	((POLICIES)) || return 0
	cat <<EOF
            add_header X-Frame-Options SAMEORIGIN always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy strict-origin-when-cross-origin always;
EOF
}

# MODE=access: what ingress-nginx renders for the same annotations (its CORS headers are
# `more_set_headers`, from a module this nginx lacks: `add_header ... always` does the same
# here), and the password file.
nginx_access() {
	((ACCESS)) || return 0
	local dir=$1
	printf '%s:%s\n' "$ACCESS_USER" "$(access_hash)" >"$dir/htpasswd"
	cat <<EOF
            allow 127.0.0.0/8;
            deny all;
            limit_req zone=bench burst=500000 nodelay;
            auth_basic "bench";
            auth_basic_user_file $dir/htpasswd;
            proxy_set_header Authorization "";
            add_header Access-Control-Allow-Origin * always;
            add_header Access-Control-Allow-Credentials true always;
            add_header Access-Control-Allow-Methods "GET, PUT, POST, DELETE, PATCH, OPTIONS" always;
            add_header Access-Control-Allow-Headers "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization" always;
            add_header Access-Control-Max-Age 1728000 always;
EOF
}

# The {SHA} hash of ACCESS_PASSWORD, as `htpasswd -s` writes it.
access_hash() {
	printf '{SHA}%s' "$(printf '%s' "$ACCESS_PASSWORD" | openssl sha1 -binary | base64 -w0)"
}

write_sluice_manifests() {
	local dir=$TMP/manifests
	mkdir -p "$dir"
	cat >"$dir/bench.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: sluice
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: sluice.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: default
spec:
  ports:
  - name: http
    port: 80
    targetPort: $BACKEND_PORT
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-local
  namespace: default
  labels:
    kubernetes.io/service-name: backend
addressType: IPv4
ports:
- name: http
  port: $BACKEND_PORT
  protocol: TCP
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
$(sluice_policies)
$(sluice_access)
spec:
  ingressClassName: sluice
  rules:
  - host: $HOST_HEADER
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: backend
            port:
              number: 80
EOF
	if ((TLS)); then
		cat >>"$dir/bench.yaml" <<EOF
  tls:
  - hosts: [$HOST_HEADER]
    secretName: bench-tls
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-tls
  namespace: default
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(sed 's/^/    /' "$TMP/tls/tls.crt")
  tls.key: |
$(sed 's/^/    /' "$TMP/tls/tls.key")
EOF
	fi
}

# MODE=policies: the Ingress's annotations (the metadata lines that follow its name), and the
# ConfigMaps they and the controller's ConfigMap need.
sluice_policies() {
	((POLICIES)) || return 0
	cat <<EOF
  annotations:
    nginx.ingress.kubernetes.io/custom-headers: default/bench-headers
    nginx.ingress.kubernetes.io/upstream-vhost: internal.example
    nginx.ingress.kubernetes.io/affinity: cookie
EOF
}

# MODE=access: the Ingress's annotations, and its htpasswd Secret.
sluice_access() {
	((ACCESS)) || return 0
	cat <<EOF
  annotations:
    nginx.ingress.kubernetes.io/auth-type: basic
    nginx.ingress.kubernetes.io/auth-secret: bench-auth
    nginx.ingress.kubernetes.io/auth-realm: bench
    nginx.ingress.kubernetes.io/enable-cors: "true"
    nginx.ingress.kubernetes.io/limit-rps: "100000"
    nginx.ingress.kubernetes.io/whitelist-source-range: 127.0.0.0/8
EOF
}

write_sluice_access_secret() {
	((ACCESS)) || return 0
	cat >"$TMP/manifests/auth.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: bench-auth
  namespace: default
stringData:
  auth: "$ACCESS_USER:$(access_hash)"
EOF
}

# Sluice's ConfigMap: client and upstream connections as long-lived as nginx's here
# (keepalive_requests 10000000 on both sides). With ingress-nginx's defaults Sluice would close
# each client connection after 1,000 requests (keep-alive-requests): wrk would reconnect (a new
# TLS handshake in https), and h2load, which does not reconnect after a GOAWAY, would stop
# loading the connection.
write_sluice_configmaps() {
	cat >"$TMP/manifests/config.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: sluice-config
  namespace: default
data:
  keep-alive-requests: "10000000"
  upstream-keepalive-requests: "10000000"
$( ((POLICIES)) && echo '  global-allowed-response-headers: X-Frame-Options,X-Content-Type-Options,Referrer-Policy')
EOF
	((POLICIES)) || return 0
	cat >>"$TMP/manifests/config.yaml" <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: bench-headers
  namespace: default
data:
  X-Frame-Options: SAMEORIGIN
  X-Content-Type-Options: nosniff
  Referrer-Policy: strict-origin-when-cross-origin
EOF
}

# Starts nginx with config $TMP/$1/nginx.conf on SERVER_CPU; sets REPLY to the master's pid.
start_nginx() {
	local name=$1 pid
	taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/$name" -e "$TMP/$name/error.log" \
		-c "$TMP/$name/nginx.conf" </dev/null >"$TMP/$name/stdout.log" 2>&1 &
	pid=$!
	STARTED+=("$pid")
	REPLY=$pid
}

# Pins every process of the nginx whose master is $1 to SERVER_CPU (workers fork after
# start-up; they inherit the master's affinity, this makes sure of it).
pin_nginx() {
	local p
	for p in $(family "$1"); do
		taskset -pc "$SERVER_CPU" "$p" >/dev/null
	done
}

# --- quiet machine ------------------------------------------------------------------------------

BUSY_SEEN=0
compilers() {
	# pgrep patterns stay under 15 characters (process names are cut there).
	pgrep -a -x 'cargo|rustc' || true
	pgrep -a -x 'cc1|cc1plus' || true
	pgrep -a -x 'ld|ld.lld|mold' || true
}

wait_for_quiet() {
	local waited=0 busy
	busy=$(compilers)
	while [[ -n $busy ]] && ((waited < QUIET_WAIT)); do
		((waited == 0)) && log "waiting up to ${QUIET_WAIT}s for builds to finish: $(echo "$busy" | cut -c1-60 | tr '\n' ';')"
		sleep 5
		waited=$((waited + 5))
		busy=$(compilers)
	done
	if [[ -n $busy ]]; then
		log "WARNING: measuring while builds run; figures are not trustworthy"
	fi
}

note_busy() {
	if [[ -n $(compilers) ]]; then
		BUSY_SEEN=1
	fi
}

# --- measuring ----------------------------------------------------------------------------------

# "busy total" jiffies of CPU $1 since boot, from /proc/stat (idle and iowait are not busy).
cpu_jiffies() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# Percentage busy between two cpu_jiffies readings $1 and $2 of one CPU.
busy_pct() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
		printf "%.0f", (y[2] > x[2] ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0) }'
}

# Converts wrk's latency (e.g. 283.00us, 1.23ms, 1.01s) to microseconds.
to_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000
		else print n
	}'
}

# The URL the load generator aims at for KIND (backend, nginx or sluice) in this MODE.
target() {
	local http tls
	case $1 in
	backend) echo "http://127.0.0.1:$BACKEND_PORT/" && return ;;
	nginx) http=$NGINX_PORT tls=$NGINX_TLS_PORT ;;
	sluice) http=$SLUICE_PORT tls=$SLUICE_TLS_PORT ;;
	esac
	# Sluice serves HTTP/1.1 and h2c on one port; nginx needs its own h2c port.
	[[ $MODE == h2 && $1 == nginx ]] && http=$NGINX_H2_PORT
	if ((TLS)); then echo "https://127.0.0.1:$tls/"; else echo "http://127.0.0.1:$http/"; fi
}

# run_load NAME KIND SECONDS PID... : the load of this MODE against KIND (see run_wrk).
run_load() {
	local name=$1 kind=$2
	shift 2
	if [[ $MODE == handshakes && $kind != backend ]]; then
		run_stime "$name" "$(target "$kind")" "$@"
	elif ((H2LOAD)) && [[ $kind != backend ]]; then
		run_h2load "$name" "$(target "$kind")" "$@"
	else
		run_wrk "$name" "$(target "$kind")" "$@"
	fi
}

# run_wrk NAME URL SECONDS PID... : runs wrk against URL, accounting the CPU of the pids given.
# Sets WRK_LINE to "rps p50_us p99_us cpu_us_per_request requests bad" (bad: non-2xx responses
# and socket errors), and WRK_BUSY to "load_cpu_busy_pct server_cpu_busy_pct" (is the load
# generator the limit, or the server CPU?). Not to be called in a subshell: it counts runs and
# notes busy machines.
run_wrk() {
	local name=$1 url=$2 secs=$3
	shift 3
	local out=$TMP/wrk-$name-$RUN_NO.txt before after load0 server0
	note_busy
	load0=$(cpu_jiffies "$LOADGEN_CPU")
	server0=$(cpu_jiffies "$SERVER_CPU")
	before=$(cpu_ticks "$@")
	local cookie=()
	((POLICIES)) && cookie=(-H "Cookie: $SESSION_COOKIE")
	((ACCESS)) && cookie=(-H "Authorization: Basic $ACCESS_CREDENTIALS")
	local script=()
	if [[ $MODE == post ]]; then
		# wrk sends the body with its Content-Length on every request.
		[[ -f $TMP/post.lua ]] ||
			printf 'wrk.method = "POST"\nwrk.body = string.rep("b", %d)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' \
				"$BODY_SIZE" >"$TMP/post.lua"
		script=(-s "$TMP/post.lua")
	fi
	taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency "${script[@]}" \
		-H "Host: $HOST_HEADER" "${cookie[@]}" "$url" >"$out"
	after=$(cpu_ticks "$@")
	WRK_BUSY="$(busy_pct "$load0" "$(cpu_jiffies "$LOADGEN_CPU")") $(busy_pct "$server0" "$(cpu_jiffies "$SERVER_CPU")")"
	note_busy
	RUN_NO=$((RUN_NO + 1))
	local rps p50 p99 requests non2xx sockerr
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
	p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
	requests=$(awk '/requests in/ { print $1 }' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
	sockerr=$(awk -F'[ ,]+' '/Socket errors:/ { print $5 + $7 + $9 + $11 }' "$out")
	[[ -n $rps && -n $requests ]] || die "cannot read wrk's output: $(cat "$out")"
	WRK_LINE=$(awk -v rps="$rps" -v p50="$p50" -v p99="$p99" -v req="$requests" \
		-v ticks=$((after - before)) -v hz="$CLK_TCK" -v bad=$((${non2xx:-0} + ${sockerr:-0})) \
		'BEGIN { printf "%s %s %s %.2f %d %d\n", rps, p50, p99, (req > 0 ? ticks / hz * 1e6 / req : 0), req, bad }')
}

# run_h2load NAME URL SECONDS PID... : h2load (h2c with prior knowledge, or over TLS with ALPN h2
# for an https URL; CONNECTIONS connections, H2_STREAMS streams each) against URL for SECONDS;
# sets WRK_LINE and WRK_BUSY as run_wrk does. h2load prints no percentiles: p50 and p99 come from
# its per-request log (--log-file, third column: microseconds to the end of the response).
run_h2load() {
	local name=$1 url=$2 secs=$3
	shift 3
	local out=$TMP/h2load-$name-$RUN_NO.txt lat=$TMP/h2load-$name-$RUN_NO.log before after load0 server0
	note_busy
	load0=$(cpu_jiffies "$LOADGEN_CPU")
	server0=$(cpu_jiffies "$SERVER_CPU")
	before=$(cpu_ticks "$@")
	taskset -c "$LOADGEN_CPU" h2load -t1 -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$secs" \
		-H ":authority: $HOST_HEADER" --log-file="$lat" "$url" >"$out" 2>&1 ||
		die "h2load failed against $url: $(tail -5 "$out")"
	after=$(cpu_ticks "$@")
	WRK_BUSY="$(busy_pct "$load0" "$(cpu_jiffies "$LOADGEN_CPU")") $(busy_pct "$server0" "$(cpu_jiffies "$SERVER_CPU")")"
	note_busy
	RUN_NO=$((RUN_NO + 1))
	local rps requests bad p50 p99
	# "finished in 10.00s, 31234.50 req/s, 1.20MB/s"
	rps=$(awk '/^finished in/ { print $4 }' "$out")
	# "requests: T total, S started, D done, K succeeded, F failed, E errored, O timeout"
	requests=$(awk '/^requests:/ { print $6 }' "$out")
	# Failed, errored and timed-out requests, and 4xx/5xx ("status codes: A 2xx, B 3xx, C 4xx, D 5xx").
	bad=$(awk '/^requests:/ { b += $10 + $12 + $14 } /^status codes:/ { b += $7 + $9 } END { print b + 0 }' "$out")
	[[ -n $rps && -n $requests ]] || die "cannot read h2load's output: $(cat "$out")"
	# An h2load that fell back to HTTP/1.1 would measure the wrong protocol: every run must have
	# spoken HTTP/2 (h2load prints "Application protocol: h2", or "h2c" without TLS).
	local proto want=h2c
	((TLS)) && want=h2
	proto=$(awk '/^Application protocol:/ { print $3; exit }' "$out")
	[[ $proto == "$want" ]] || die "h2load spoke '${proto:-nothing}', not $want, with $url: $(head -20 "$out")"
	read -r p50 p99 < <(awk -F'\t' '{ print $3 }' "$lat" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) { print "0 0"; exit }
			i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
			print v[i50], v[i99] }')
	rm -f "$lat"
	WRK_LINE=$(awk -v rps="$rps" -v p50="$p50" -v p99="$p99" -v req="$requests" \
		-v ticks=$((after - before)) -v hz="$CLK_TCK" -v bad="$bad" \
		'BEGIN { printf "%s %s %s %.2f %d %d\n", rps, p50, p99, (req > 0 ? ticks / hz * 1e6 / req : 0), req, bad }')
}

# run_stime NAME URL SECONDS PID... : full TLS handshakes with HANDSHAKE_CLIENTS concurrent
# `openssl s_time -new` against the host and port of URL for SECONDS; sets WRK_LINE and WRK_BUSY
# as run_wrk does (handshakes/s in place of requests/s, no latencies: 0).
run_stime() {
	local name=$1 url=$2 secs=$3
	shift 3
	local out=$TMP/stime-$name-$RUN_NO before after load0 server0 t0 t1 hostport i pids=()
	hostport=${url#https://}
	hostport=${hostport%/}
	note_busy
	load0=$(cpu_jiffies "$LOADGEN_CPU")
	server0=$(cpu_jiffies "$SERVER_CPU")
	before=$(cpu_ticks "$@")
	t0=$(date +%s.%N)
	for ((i = 0; i < HANDSHAKE_CLIENTS; i++)); do
		taskset -c "$LOADGEN_CPU" openssl s_time -connect "$hostport" -new -time "$secs" >"$out.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || die "openssl s_time failed against $hostport: $(tail -5 "$out.$i")"
	done
	t1=$(date +%s.%N)
	after=$(cpu_ticks "$@")
	WRK_BUSY="$(busy_pct "$load0" "$(cpu_jiffies "$LOADGEN_CPU")") $(busy_pct "$server0" "$(cpu_jiffies "$SERVER_CPU")")"
	note_busy
	RUN_NO=$((RUN_NO + 1))
	local conns
	# Each prints "1234 connections in 10 real seconds, 0 bytes read per connection".
	conns=$(cat "$out".* | awk '/connections in .* real seconds/ { n += $1; seen = 1 } END { if (seen) print n }')
	[[ -n $conns ]] || die "cannot read openssl s_time's output: $(cat "$out".*)"
	WRK_LINE=$(awk -v n="$conns" -v t0="$t0" -v t1="$t1" -v ticks=$((after - before)) -v hz="$CLK_TCK" \
		'BEGIN { printf "%.1f 0 0 %.2f %d 0\n", n / (t1 - t0), (n > 0 ? ticks / hz * 1e6 / n : 0), n }')
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- main ---------------------------------------------------------------------------------------

mkdir -p "$TMP/backend" "$TMP/nginx"
((TLS)) && write_certificate
write_backend_conf
write_proxy_conf
write_sluice_manifests
write_sluice_configmaps
write_sluice_access_secret
"$NGINX" -t -q -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf"
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"

start_nginx backend
BACKEND_PID=$REPLY
wait_for "http://127.0.0.1:$BACKEND_PORT/" || die "the backend did not start: $(cat "$TMP/backend/error.log" "$TMP/backend/stdout.log")"
pin_nginx "$BACKEND_PID"
mapfile -t BACKEND_PIDS < <(family "$BACKEND_PID")

start_nginx nginx
NGINX_PID=$REPLY
wait_for -k "${CURL_PROTO[@]}" "${READY_AUTH[@]}" -H "Host: $HOST_HEADER" "$(target nginx)" || die "nginx did not start: $(cat "$TMP/nginx/error.log" "$TMP/nginx/stdout.log")"
pin_nginx "$NGINX_PID"
mapfile -t NGINX_PIDS < <(family "$NGINX_PID")

# Sluice's access log goes to stdout: /dev/null. Its own logs (stderr) go to a file.
SLUICE_TLS_ARGS=()
# wrk sends the IP address as server name and s_time none: both get the default certificate,
# which is the bench certificate, as in nginx (its only server).
((TLS)) && SLUICE_TLS_ARGS=(--default-ssl-certificate default/bench-tls)
SLUICE_TLS_ARGS+=(--configmap default/sluice-config)
taskset -c "$SERVER_CPU" "$SLUICE_BIN" serve --manifests "$TMP/manifests" \
	--bind-address 127.0.0.1 --http-port "$SLUICE_PORT" --https-port "$SLUICE_TLS_PORT" \
	--healthz-port "$SLUICE_ADMIN_PORT" "${SLUICE_TLS_ARGS[@]}" \
	--workers 1 </dev/null >/dev/null 2>"$TMP/sluice.log" &
SLUICE_PID=$!
STARTED+=("$SLUICE_PID")
wait_for "http://127.0.0.1:$SLUICE_ADMIN_PORT/readyz" || die "sluice did not start: $(cat "$TMP/sluice.log")"
wait_for -k "${CURL_PROTO[@]}" "${READY_AUTH[@]}" -H "Host: $HOST_HEADER" "$(target sluice)" ||
	die "sluice does not route to the backend: $(curl -sk "${CURL_PROTO[@]}" -H "Host: $HOST_HEADER" "$(target sluice)"; cat "$TMP/sluice.log")"
SLUICE_PIDS=("$SLUICE_PID")

# MODE=policies measures nothing if a policy silently did not apply: both proxies must answer
# with the three headers, and Sluice must set the affinity cookie on a request without one.
check_policies() {
	((POLICIES)) || return 0
	local kind h headers
	for kind in nginx sluice; do
		headers=$(curl -sk -o /dev/null -D - -H "Host: $HOST_HEADER" -H "Cookie: $SESSION_COOKIE" "$(target "$kind")")
		for h in X-Frame-Options X-Content-Type-Options Referrer-Policy; do
			grep -qi "^$h:" <<<"$headers" || die "$kind does not add $h in MODE=policies: $headers"
		done
	done
	headers=$(curl -sk -o /dev/null -D - -H "Host: $HOST_HEADER" "$(target sluice)")
	grep -qi '^set-cookie: INGRESSCOOKIE=' <<<"$headers" ||
		die "sluice does not set the affinity cookie in MODE=policies: $headers"
}
check_policies

# MODE=access, the same: both proxies refuse a request without credentials, and answer one
# with them with the CORS headers.
check_access() {
	((ACCESS)) || return 0
	local kind code headers
	for kind in nginx sluice; do
		code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $HOST_HEADER" "$(target "$kind")")
		[[ $code == 401 ]] || die "$kind answers $code without credentials in MODE=access"
		headers=$(curl -sk -o /dev/null -D - -H "Host: $HOST_HEADER" -H "Authorization: Basic $ACCESS_CREDENTIALS" "$(target "$kind")")
		grep -q "^HTTP/1.1 200" <<<"$headers" || die "$kind does not let the credentials in: $headers"
		grep -qi '^access-control-allow-origin: \*' <<<"$headers" || die "$kind sends no CORS header: $headers"
	done
}
check_access

# MODE=h2tls measures HTTP/2 only if both proxies choose it: an OpenSSL client offering h2 and
# http/1.1 must be answered h2, and curl --http2 must get an HTTP/2 response. ALPN_SEEN keeps
# what each negotiated, for the results.
ALPN_SEEN=""
check_alpn() {
	[[ $MODE == h2tls ]] || return 0
	local kind port alpn version
	for kind in nginx sluice; do
		port=$NGINX_TLS_PORT
		[[ $kind == sluice ]] && port=$SLUICE_TLS_PORT
		alpn=$(openssl s_client -connect "127.0.0.1:$port" -alpn h2,http/1.1 </dev/null 2>/dev/null |
			awk -F': ' '/^ALPN protocol:/ { print $2; exit }')
		[[ $alpn == h2 ]] || die "$kind negotiated ALPN '${alpn:-none}', not h2, on port $port"
		version=$(curl -sk --http2 -o /dev/null -w '%{http_version}' -H "Host: $HOST_HEADER" "$(target "$kind")")
		[[ $version == 2 ]] || die "curl --http2 got HTTP/$version, not HTTP/2, from $kind"
		ALPN_SEEN+="${ALPN_SEEN:+, }$kind ALPN $alpn (curl: HTTP/$version)"
	done
}
check_alpn

for name in backend nginx sluice; do
	case $name in
	backend) pids=("${BACKEND_PIDS[@]}") ;;
	nginx) pids=("${NGINX_PIDS[@]}") ;;
	sluice) pids=("${SLUICE_PIDS[@]}") ;;
	esac
	for p in "${pids[@]}"; do
		log "$name pid $p: $(taskset -pc "$p" | sed 's/.*: //') CPU affinity"
	done
done

wait_for_quiet

RUN_NO=0
log "warm-up: ${WARMUP}s each for the backend, nginx and sluice"
if ((WARMUP > 0)); then
	[[ $MODE == handshakes ]] || run_load warmup-backend backend "$WARMUP" "${BACKEND_PIDS[@]}"
	run_load warmup-nginx nginx "$WARMUP" "${NGINX_PIDS[@]}"
	run_load warmup-sluice sluice "$WARMUP" "${SLUICE_PIDS[@]}"
fi

# kind pair rps p50 p99 proxy_cpu requests bad backend_cpu load_busy% server_busy%
RESULTS=$TMP/results.txt
: >"$RESULTS"

measure() {
	local kind=$1 pair=$2 pids line bticks_before bticks_after bcpu
	case $kind in
	backend) pids=("${BACKEND_PIDS[@]}") ;;
	nginx) pids=("${NGINX_PIDS[@]}") ;;
	sluice) pids=("${SLUICE_PIDS[@]}") ;;
	esac
	local split_before split_after
	bticks_before=$(cpu_ticks "${BACKEND_PIDS[@]}")
	split_before=$(cpu_split "${pids[@]}")
	run_load "$kind" "$kind" "$DURATION" "${pids[@]}"
	line=$WRK_LINE
	split_after=$(cpu_split "${pids[@]}")
	bticks_after=$(cpu_ticks "${BACKEND_PIDS[@]}")
	bcpu=$(awk -v t=$((bticks_after - bticks_before)) -v hz="$CLK_TCK" -v req="$(echo "$line" | awk '{ print $5 }')" \
		'BEGIN { printf "%.2f", (req > 0 ? t / hz * 1e6 / req : 0) }')
	# User-space and kernel CPU µs per request, appended as the 12th and 13th fields.
	split=$(awk -v b="$split_before" -v a="$split_after" -v hz="$CLK_TCK" -v req="$(echo "$line" | awk '{ print $5 }')" \
		'BEGIN { split(b, x, " "); split(a, y, " ")
			if (req > 0) printf "%.2f %.2f", (y[1] - x[1]) / hz * 1e6 / req, (y[2] - x[2]) / hz * 1e6 / req
			else print "0 0" }')
	echo "$kind $pair $line $bcpu $WRK_BUSY $split" >>"$RESULTS"
	log "$(printf '%-8s pair %-2s %10s req/s  p50 %7sus  p99 %7sus  %6s CPU us/req  (backend %s)  CPU busy %s%%/%s%%' \
		"$kind" "$pair" "$(echo "$line" | awk '{ print $1 }')" "$(echo "$line" | awk '{ print $2 }')" \
		"$(echo "$line" | awk '{ print $3 }')" "$(echo "$line" | awk '{ print $4 }')" "$bcpu" "${WRK_BUSY% *}" "${WRK_BUSY#* }")"
}

# With handshakes only, the backend plays no part.
if [[ $MODE != handshakes ]]; then
	log "backend alone, ${DURATION}s"
	measure backend 0
fi
for ((pair = 1; pair <= PAIRS; pair++)); do
	if ((pair % 2)); then order=(nginx sluice); else order=(sluice nginx); fi
	log "pair $pair of $PAIRS: ${order[0]} then ${order[1]}, ${DURATION}s each"
	for kind in "${order[@]}"; do
		measure "$kind" "$pair"
	done
done
if [[ $MODE != handshakes ]]; then
	log "backend alone again, ${DURATION}s"
	measure backend 0
fi

# --- profile (PROFILE=1) ------------------------------------------------------------------------

# profile KIND: one run under strace -c and nstat, one under perf record; appends a row to
# $PROFILE_ROWS and the top symbols to $PROFILE_TOP.
PROFILE_ROWS="" PROFILE_TOP=""
profile() {
	local kind=$1 pids st tr req calls segs acks perf_note="perf record did not run (perf_event_paranoid, or no perf)"
	case $kind in
	nginx) pids=("${NGINX_PIDS[@]}") ;;
	sluice) pids=("${SLUICE_PIDS[@]}") ;;
	esac
	tr=$TMP/strace-$kind.txt
	local args=()
	for p in "${pids[@]}"; do args+=(-p "$p"); done
	strace -c -f -o "$tr" "${args[@]}" 2>"$TMP/strace-$kind.log" &
	st=$!
	# Attached once strace says so for every process.
	local waited=0
	until (($(grep -c 'attached' "$TMP/strace-$kind.log" 2>/dev/null || true) >= ${#pids[@]})) || ((waited > 100)); do
		sleep 0.1
		waited=$((waited + 1))
	done
	nstat -n >/dev/null
	run_load "profile-$kind" "$kind" "$DURATION" "${pids[@]}"
	req=$(echo "$WRK_LINE" | awk '{ print $5 }')
	read -r segs acks < <(nstat 2>/dev/null | awk '$1 == "TcpOutSegs" { s = $2 } $1 == "TcpExtTCPPureAcks" { a = $2 } END { print s + 0, a + 0 }')
	kill -INT "$st" 2>/dev/null || true
	wait "$st" 2>/dev/null || true
	# strace -c: "% time seconds usecs/call calls [errors] syscall"; the total line last.
	calls=$(awk -v req="$req" '$NF != "total" && $4 ~ /^[0-9]+$/ && req > 0 { n = $4 / req; t += n; if (n >= 0.05) l = l sprintf("%s%s %.2f", (l == "" ? "" : ", "), $NF, n) }
		END { printf "%.2f (%s)", t, l }' "$tr")
	if command -v perf >/dev/null; then
		perf record -q -e cpu-clock -o "$TMP/perf-$kind.data" "${args[@]}" -- sleep "$DURATION" >/dev/null 2>"$TMP/perf-$kind.log" &
		local pp=$!
		run_load "perf-$kind" "$kind" "$DURATION" "${pids[@]}"
		if wait "$pp" && [[ -s $TMP/perf-$kind.data ]]; then
			local kshare
			kshare=$(perf report -q -i "$TMP/perf-$kind.data" --sort dso --stdio 2>/dev/null |
				awk '/\[kernel/ { gsub(/%/, "", $1); k += $1 } END { printf "%.0f%%", k }')
			perf_note="$kshare of the CPU samples in the kernel"
			PROFILE_TOP+=$'\n'"$kind, top symbols (perf record -e cpu-clock, $DURATION s):"$'\n\n```\n'"$(perf report -q -i "$TMP/perf-$kind.data" --sort dso,sym --stdio 2>/dev/null | awk 'NF && n++ < 15')"$'\n```\n'
		fi
	fi
	PROFILE_ROWS+="| $kind | $calls | $(awk -v s="$segs" -v r="$req" 'BEGIN { printf "%.2f", (r > 0 ? s / r : 0) }') | $(awk -v s="$acks" -v r="$req" 'BEGIN { printf "%.3f", (r > 0 ? s / r : 0) }') | $perf_note |"$'\n'
}

PROFILE_SECTION=""
if ((PROFILE)) && [[ $MODE != handshakes ]]; then
	log "profiling: a run of each proxy under strace and nstat, one under perf (${DURATION}s each)"
	profile nginx
	profile sluice
	PROFILE_SECTION="
### Profile (PROFILE=1; these runs are left out of every figure above)

| proxy | system calls per request (the frequent ones) | TCP segments sent per request, all processes | pure ACKs per request | perf |
|---|---|---|---|---|
${PROFILE_ROWS}
Segments count every process on the machine (load generator, proxy, backend): 4 is one segment each way on both connections.
${PROFILE_TOP}"
fi

# --- report -------------------------------------------------------------------------------------

col() { awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$RESULTS"; }
med() { col "$1" "$2" | median; }
RATIOS=$(awk '$1 == "nginx" { n[$2] = $3 } $1 == "sluice" { s[$2] = $3 }
	END { for (p in n) if (n[p] > 0) print s[p] / n[p] }' "$RESULTS")
RATIO=$(echo "$RATIOS" | median)
RATIO_MIN=$(echo "$RATIOS" | sort -g | head -1)
RATIO_MAX=$(echo "$RATIOS" | sort -g | tail -1)
BAD=$(awk '{ s += $8 } END { print s + 0 }' "$RESULTS")

row() { # label kind relative
	local proxy_cpu=— p50=— p99=— backend_cpu=—
	[[ $2 == backend ]] || proxy_cpu=$(printf '%.2f' "$(med "$2" 6)")
	# s_time measures no latency, and the backend does nothing during handshakes.
	if [[ $MODE != handshakes ]]; then
		p50=$(printf '%.0f' "$(med "$2" 4)") p99=$(printf '%.0f' "$(med "$2" 5)")
		backend_cpu=$(printf '%.2f' "$(med "$2" 9)")
	fi
	printf '| %s | %.0f | %s | %s | %s | %s | %s | %.0f%% / %.0f%% |\n' "$1" "$(med "$2" 3)" "$3" \
		"$p50" "$p99" "$proxy_cpu" "$backend_cpu" "$(med "$2" 10)" "$(med "$2" 11)"
}

if ((BUSY_SEEN)); then QUIET=no; else QUIET=yes; fi
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
SLUICE_VERSION=$("$SLUICE_BIN" --version 2>/dev/null || echo sluice)

# What each proxy negotiates with an OpenSSL client, for the record.
negotiated() {
	openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
		awk '/^New, / { v = $2; c = $NF } END { print v, c }'
}
case $MODE in
http)
	LOAD="wrk -t1 -c$CONNECTIONS, HTTP/1.1 over kept-alive connections"
	UNIT=requests
	;;
policies)
	LOAD="wrk -t1 -c$CONNECTIONS, HTTP/1.1 over kept-alive connections, with a session cookie"
	UNIT=requests
	POLICY_NOTE='- Policies on the route: three response headers (Sluice `custom-headers`, nginx `add_header ... always`), the upstream Host (`upstream-vhost`, `proxy_set_header Host`), cookie affinity (Sluice `affinity: cookie`, nginx `hash $cookie_INGRESSCOOKIE consistent`); every request carries the session cookie.'
	;;
access)
	LOAD="wrk -t1 -c$CONNECTIONS, HTTP/1.1 over kept-alive connections, with basic credentials"
	UNIT=requests
	POLICY_NOTE='- Access control on the route: basic authentication with a {SHA} htpasswd entry (Sluice `auth-type: basic`, nginx `auth_basic`), CORS headers (Sluice `enable-cors`, nginx five `add_header ... always`), a rate limit that never refuses (Sluice `limit-rps: 100000`, nginx `limit_req` at 100000r/s with the same burst), an allow list (Sluice `whitelist-source-range`, nginx `allow`/`deny all`); every request carries the credentials.'
	;;
post)
	LOAD="wrk -t1 -c$CONNECTIONS, HTTP/1.1 POSTs of $BODY_SIZE bytes over kept-alive connections"
	UNIT=requests
	POLICY_NOTE="- Each request carries a body of $BODY_SIZE bytes with its Content-Length; both proxies buffer it before sending it on (request buffering on, ingress-nginx's default): nginx in its 8k client_body_buffer_size and a temporary file beyond, Sluice in memory. The backend (nginx \`return 200\`) discards it."
	;;
https)
	LOAD="wrk -t1 -c$CONNECTIONS, HTTP/1.1 over kept-alive TLS connections ($KEY_TYPE certificate)"
	UNIT=requests
	;;
h2tls)
	LOAD="h2load -t1 -c$CONNECTIONS -m$H2_STREAMS, HTTP/2 over kept-alive TLS connections, ALPN h2 ($KEY_TYPE certificate)"
	UNIT=requests
	;;
h2)
	LOAD="h2load -t1 -c$CONNECTIONS -m$H2_STREAMS, HTTP/2 over cleartext with prior knowledge (h2c), kept-alive connections"
	UNIT=requests
	;;
handshakes)
	LOAD="$HANDSHAKE_CLIENTS × openssl s_time -new: a full TLS handshake per connection, no request ($KEY_TYPE certificate)"
	UNIT=handshakes
	;;
esac
TLS_NOTE="${POLICY_NOTE:-}"
if ((TLS)); then
	TLS_NOTE="- Negotiated with an OpenSSL client: nginx $(negotiated "$NGINX_TLS_PORT"), Sluice $(negotiated "$SLUICE_TLS_PORT"). Both serve the same certificate; nginx with ingress-nginx's TLS settings (session cache, no tickets, HSTS header), Sluice with its defaults (HSTS too)."
fi
if [[ $MODE == h2tls ]]; then
	TLS_NOTE+=$'\n'"- HTTP/2 over TLS, as browsers speak it: h2load (ALPN h2) to Sluice's HTTPS port and to nginx's \`listen ... ssl http2\` port, $H2_STREAMS concurrent stream(s) per connection, h2load's default window sizes; both proxies forward over HTTP/1.1 with kept-alive upstream connections. Checked before measuring: $ALPN_SEEN; and every h2load run reported \"Application protocol: h2\". p50/p99 are from h2load's per-request log. The backend-alone rows are wrk over plain HTTP/1.1."
fi
if [[ $MODE == h2 ]]; then
	TLS_NOTE="- HTTP/2 without TLS, prior knowledge: h2load to Sluice's HTTP port (HTTP/1.1 and h2c on one port) and to nginx's \`listen ... http2\` port ($H2_STREAMS stream(s) per connection, h2load's default window sizes); both proxies forward over HTTP/1.1 with kept-alive upstream connections. p50/p99 are from h2load's per-request log (time to the end of each response). The backend-alone rows are wrk over HTTP/1.1."
fi
BACKEND_ROW=""
[[ $MODE == handshakes ]] || BACKEND_ROW=$(row "backend alone (nginx \`return 200\`, 1 worker, plain HTTP/1.1 with wrk)" backend "—")$'\n'
if [[ $MODE == handshakes ]]; then
	LOAD_BUSY=$(med nginx 10)
	TLS_NOTE+=$'\n'"- With handshakes the client side costs as much as the server side: when CPU $LOADGEN_CPU is near 100% (here $(printf '%.0f' "$LOAD_BUSY")% during nginx's runs), the load generator is the limit and handshakes/s says little; CPU µs per handshake is then the figure to compare (1,000,000 / that = handshakes per second one core could do)."
fi

cat <<EOF

## Sluice vs nginx ($MODE): $PAIRS pair(s) of ${DURATION}s runs, $LOAD on CPU $LOADGEN_CPU, backend and proxy on CPU $SERVER_CPU

| what | $UNIT/s (median) | relative to nginx | p50 µs | p99 µs | proxy CPU µs per ${UNIT%s} | backend CPU µs/request | CPU $LOADGEN_CPU (load) / CPU $SERVER_CPU busy |
|---|---|---|---|---|---|---|---|
$BACKEND_ROW$(row "nginx reverse proxy ($NGINX_VERSION), 1 worker, upstream keep-alive" nginx "1.00")
$(row "sluice serve --workers 1 ($SLUICE_VERSION)" sluice "$(printf '%.2f' "$RATIO")")

- sluice/nginx: median of $PAIRS per-pair ratio(s) $(printf '%.2f' "$RATIO") (range $(printf '%.2f' "$RATIO_MIN")–$(printf '%.2f' "$RATIO_MAX")); expect about ±0.10 between two identical proxies measured this way.
- Latencies and CPU are medians over runs; the backend-alone row is the median of a run before and a run after the pairs: the physical limit of this setup.
- CPU µs/request: utime+stime of all the proxy's processes (nginx master and worker; every sluice thread) over the run, divided by requests served. It does not depend on how much of CPU $SERVER_CPU the proxy got.
- Of that, in user space / in the kernel (medians): nginx $(med nginx 12) / $(med nginx 13) µs, Sluice $(med sluice 12) / $(med sluice 13) µs. The kernel's part is mostly TCP on loopback, where each write also runs the receiving side's processing. Were Sluice's user space free, the ratio here would be $(awk -v n="$(med nginx 6)" -v nb="$(med nginx 9)" -v k="$(med sluice 13)" -v sb="$(med sluice 9)" 'BEGIN { printf "%.2f", (k + sb > 0 ? (n + nb) / (k + sb) : 0) }') (nginx's CPU and its backend's, over Sluice's kernel time and its backend's): the ceiling of user-space work on this machine.
- Access logs: Sluice formats a line per request and writes it (batched by a thread) to stdout, sent to /dev/null. nginx: $(if [[ $ACCESS_LOG == on ]]; then echo "the same, an upstreaminfo line per request, buffered 64k, to /dev/null"; else echo "no access log (ACCESS_LOG=off), so nginx does less work than Sluice"; fi). The backend logs nothing.
- CPU busy: how much of the load generator's CPU and of the servers' CPU was in use during the runs. With CPU $SERVER_CPU near 100% the proxy and backend are the limit, as intended; with CPU $LOADGEN_CPU near 100% wrk is (typically for the backend alone, which is then a lower bound of the limit).
- Error responses and socket errors across all runs: $BAD.
- Machine quiet (no cargo/rustc/linker running) during every run: $QUIET.
$TLS_NOTE
$PROFILE_SECTION

<details><summary>every run</summary>

| run | pair | $UNIT/s | p50 µs | p99 µs | own CPU µs/req | backend CPU µs/req | CPU $LOADGEN_CPU / $SERVER_CPU busy | requests | errors |
|---|---|---|---|---|---|---|---|---|---|
$(awk '{ printf "| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s%% / %s%% | %s | %s |\n", $1, $2, $3, $4, $5, $6, $9, $10, $11, $7, $8 }' "$RESULTS")

</details>
EOF

if ((BAD > 0)); then
	log "WARNING: $BAD error responses or socket errors: the figures include failures"
fi
