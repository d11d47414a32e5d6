#!/usr/bin/env bash
# Issue 15's performance targets ("Speed II"), measured end to end in one run, printed as one
# Markdown table `| # | target | goal | measured | baseline | met? |`:
#
#   1. HTTPS keep-alive, HTTP/1.1 over TLS, RSA 2048 and ECDSA P-256 certificates: >= 1.15x
#      nginx's requests/s, p99 no higher (proxy-vs-nginx.sh MODE=https, KEY_TYPE=rsa and ecdsa)
#   2. HTTP/2 over TLS (ALPN h2, T2_STREAMS concurrent streams per connection, as a browser):
#      >= 1.1x nginx (MODE=h2tls); HTTP/2 cleartext with prior knowledge: >= 1.1x (MODE=h2)
#   3. HTTP/1.1 POSTs of 1 KiB and 256 KiB: >= 1.1x nginx (MODE=post, BODY_SIZE=1024 and
#      262144)
#   4. HTTP/1.1 GET stays at or above today's ratio (MODE=http; met at T4_GOAL, issue 5's 1.3x)
#   5. a new application (one Ingress, two Services, two EndpointSlices in one change) with
#      INGRESSES (10,000) loaded, under wrk load: p99 from the write to the first 200 through
#      the proxy < 30 ms, no full rebuild; the same for its removal (first 404). Manifests mode
#      only (propagation newapp): see bench/README.md for why not Kubernetes mode
#   6. memory with INGRESSES loaded: VmRSS < 100 MB, and within 10% of that after
#      MEMORY_CHANGES (1,000) such changes (propagation memory --change newapp)
#   7. INGRESSES TLS hosts with certificates of their own (gen-manifests --tls): handshake
#      throughput within 5% of one certificate for every host (--tls-default), memory per
#      certificate reported, a rotated certificate presented within 30 ms (propagation tls)
#
# Both proxies write access logs in every proxy-vs-nginx.sh run (its ACCESS_LOG=on default),
# in front of the same backend, on the same CPU. Machine set-up as shared/docs/performance.md
# prescribes for 2 cores: load generators (wrk, h2load, the probes) on LOADGEN_CPU; Sluice,
# nginx and the backends on SERVER_CPU.
#
# Usage: bench/targets.sh            (builds excluded: about 6 minutes of proxy runs, 2 of
#                                    certificates, and targets 5 and 6's 1,400 changes: a few
#                                    minutes if they are incremental updates, 15-20 more if
#                                    each is a full translation of 10,000 Ingresses, 0.5-1 s)
#        PAIRS=1 DURATION=2 INGRESSES=500 T5_CHANGES=20 MEMORY_CHANGES=100 TLS_ROTATIONS=5 \
#          bench/targets.sh         (a quick check that everything works: a few minutes)
#        SKIP="1 2 3 4" bench/targets.sh   (the control plane only)
#
# Environment (defaults in brackets):
#   INGRESSES [10000]          the synthetic cluster's size (gen-manifests --ingresses)
#   PAIRS [3] DURATION [5] WARMUP [2]   proxy-vs-nginx.sh's PAIRS, DURATION and WARMUP for
#                              targets 1-4 (T1_PAIRS, T1_DURATION, T1_WARMUP are read too)
#   T2_STREAMS [8]             target 2: concurrent streams per HTTP/2 connection, TLS and h2c
#   T4_GOAL [1.3]              target 4: the ratio HTTP/1.1 must stay at or above
#   T5_CHANGES [200]           target 5: new applications written (and removed) under load
#   MEMORY_CHANGES [1000]      target 6: changes (a new application, its removal, in turn)
#   WRK_CONNECTIONS [16]       targets 5 and 6: wrk connections loading an existing route
#   TRAFFIC_S [5]              target 6: seconds of traffic before measuring memory
#   TLS_CLIENTS [8] TLS_PAIRS [3] TLS_DURATION [5]   target 7: concurrent handshaking clients,
#                              pairs of runs (many certificates, one) and seconds per run
#   TLS_ROTATIONS [20]         target 7: certificate rotations
#   DEBOUNCE_MS []             Sluice's --debounce-ms in targets 5-7 (empty: its default, 10)
#   SKIP []                    targets not to run, e.g. "1 7"
#   LOADGEN_CPU [0] SERVER_CPU [1]
#   QUIET_WAIT [120]           seconds to wait for running builds before the proxy runs (see
#                              proxy-vs-nginx.sh)
#   OUT_DIR [target/bench-targets]  where every step's full output and the table are written
#   PROBE_PORT_BASE [28490]    Sluice's HTTP, HTTPS, admin ports and the backend's, then the
#                              second Sluice's three of target 7: 7 ports from there
#                              (proxy-vs-nginx.sh uses 28480-28486)
#   KEEP_TMP [0]               1 keeps the generated manifests
#
# Needs cargo, wrk, taskset, curl (and what proxy-vs-nginx.sh installs: nginx, openssl,
# h2load); installs what is missing with apt-get.
set -euo pipefail

INGRESSES=${INGRESSES:-10000}
PAIRS=${PAIRS:-${T1_PAIRS:-3}}
DURATION=${DURATION:-${T1_DURATION:-5}}
WARMUP=${WARMUP:-${T1_WARMUP:-2}}
T2_STREAMS=${T2_STREAMS:-8}
T4_GOAL=${T4_GOAL:-1.3}
T5_CHANGES=${T5_CHANGES:-200}
MEMORY_CHANGES=${MEMORY_CHANGES:-1000}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-16}
TRAFFIC_S=${TRAFFIC_S:-5}
TLS_CLIENTS=${TLS_CLIENTS:-8}
TLS_PAIRS=${TLS_PAIRS:-3}
TLS_DURATION=${TLS_DURATION:-5}
TLS_ROTATIONS=${TLS_ROTATIONS:-20}
DEBOUNCE_MS=${DEBOUNCE_MS:-}
SKIP=${SKIP:-}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
QUIET_WAIT=${QUIET_WAIT:-120}
PROBE_PORT_BASE=${PROBE_PORT_BASE:-28490}
KEEP_TMP=${KEEP_TMP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$TARGET_DIR/bench-targets}

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

for v in INGRESSES PAIRS DURATION WARMUP T2_STREAMS T5_CHANGES MEMORY_CHANGES WRK_CONNECTIONS TRAFFIC_S \
	TLS_CLIENTS TLS_PAIRS TLS_DURATION TLS_ROTATIONS LOADGEN_CPU SERVER_CPU QUIET_WAIT PROBE_PORT_BASE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[[ $T4_GOAL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "T4_GOAL must be a number, not '$T4_GOAL'"
[[ -z $DEBOUNCE_MS || $DEBOUNCE_MS =~ ^[0-9]+$ ]] || die "DEBOUNCE_MS must be a whole number"
((SERVER_CPU < $(nproc) && LOADGEN_CPU < $(nproc))) ||
	die "CPUs $LOADGEN_CPU and $SERVER_CPU needed, $(nproc) online"
skipped() { [[ " $SKIP " == *" $1 "* ]]; }

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "cannot run '$*': not root and no sudo"
	fi
}

install_missing() {
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v taskset >/dev/null || missing+=(util-linux)
	command -v curl >/dev/null || missing+=(curl)
	((${#missing[@]} == 0)) && return
	log "installing ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-targets.XXXXXX")
cleanup() {
	if [[ $KEEP_TMP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BUSY_SEEN=0
note_busy() {
	# Each pgrep pattern under 16 characters: pgrep refuses longer ones (and matches nothing).
	if [[ -n $(pgrep -x 'cargo|rustc' || true; pgrep -x 'cc1|cc1plus' || true; pgrep -x 'ld|ld.lld|mold' || true) ]]; then
		BUSY_SEEN=1
	fi
}

STARTED_AT=$(date +%s)
elapsed() { echo "$(($(date +%s) - STARTED_AT)) s"; }

install_missing
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.txt "$OUT_DIR"/*.md "$OUT_DIR"/*.log

log "building (cargo build --release -p sluice -p sluice-bench --bins)"
(cd "$ROOT" && cargo build --release -p sluice && cargo build --release -p sluice-bench --bins)
SLUICE=$TARGET_DIR/release/sluice
GEN=$TARGET_DIR/release/gen-manifests
PROBE=$TARGET_DIR/release/propagation
for b in "$SLUICE" "$GEN" "$PROBE"; do
	[[ -x $b ]] || die "no binary at $b after the build"
done

HTTP_PORT=$PROBE_PORT_BASE
HTTPS_PORT=$((PROBE_PORT_BASE + 1))
ADMIN_PORT=$((PROBE_PORT_BASE + 2))
BACKEND_PORT=$((PROBE_PORT_BASE + 3))
BACKEND=127.0.0.1:$BACKEND_PORT
# Target 7's second Sluice (the single-certificate setup).
SINGLE_PORTS=$((PROBE_PORT_BASE + 4)),$((PROBE_PORT_BASE + 5)),$((PROBE_PORT_BASE + 6))

# val FILE KEY: the value of KEY=... in FILE.
val() { awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2) }' "$1"; }
# Whether awk expression $1 is true.
holds() { awk "BEGIN { exit !($1) }"; }
# How far MEASURED is over the LIMIT (for rows that fail): "1.6x the goal".
over() { awk -v m="$1" -v l="$2" 'BEGIN { printf "%.1fx the goal", m / l }'; }
# "a; b" from the reasons a row is not met (empty: met).
met_or() { if [[ -z $1 ]]; then echo yes; else echo "no: ${1#; }"; fi; }

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# --- targets 1-4: proxy-vs-nginx.sh ---------------------------------------------------------------

# pvn_get FILE KIND(nginx|sluice) COLUMN(rps|p50|p99|cpu): a cell of a proxy-vs-nginx table.
pvn_get() {
	local col
	case $3 in rps) col=3 ;; p50) col=5 ;; p99) col=6 ;; cpu) col=7 ;; esac
	awk -F'|' -v k="$2" -v c="$col" '$2 ~ ("^ " k) { gsub(/ /, "", $c); print $c; exit }' "$1"
}
pvn_ratio() { sed -n 's/.*per-pair ratio(s) \([0-9.]*\) (range \([0-9.]*\)–\([0-9.]*\)).*/\1 \2 \3/p' "$1"; }
NGINX_VERSION=""

# proxy_target ROW TARGET GOAL_RATIO P99(1: p99 must be no higher than nginx's) NAME VAR=VALUE...:
# runs proxy-vs-nginx.sh with the variables given, adds a row.
proxy_target() {
	local id=$1 what=$2 goal=$3 p99_goal=$4 name=$5
	shift 5
	local out=$OUT_DIR/target$id-$name.md
	log "target $id: proxy-vs-nginx.sh $*, $PAIRS pair(s) of ${DURATION}s ($(elapsed))"
	note_busy
	env "$@" DURATION="$DURATION" PAIRS="$PAIRS" WARMUP="$WARMUP" SLUICE_BIN="$SLUICE" \
		LOADGEN_CPU="$LOADGEN_CPU" SERVER_CPU="$SERVER_CPU" QUIET_WAIT="$QUIET_WAIT" \
		"$ROOT/bench/proxy-vs-nginx.sh" >"$out" 2>"$out.log" ||
		die "proxy-vs-nginx.sh $* failed: $(tail -20 "$out.log")"
	note_busy
	[[ -n $NGINX_VERSION ]] || NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: nginx\///')
	local ratio rmin rmax ns_rps ng_rps ns_p99 ng_p99 ns_cpu ng_cpu errors="" reasons=""
	read -r ratio rmin rmax < <(pvn_ratio "$out")
	ns_rps=$(pvn_get "$out" sluice rps) ng_rps=$(pvn_get "$out" nginx rps)
	ns_p99=$(pvn_get "$out" sluice p99) ng_p99=$(pvn_get "$out" nginx p99)
	ns_cpu=$(pvn_get "$out" sluice cpu) ng_cpu=$(pvn_get "$out" nginx cpu)
	grep -q 'Error responses and socket errors across all runs: 0\.' "$out" || errors=" (errors: see $out)"
	holds "$ratio >= $goal" || reasons+="; $(awk -v r="$ratio" -v g="$goal" 'BEGIN { printf "%.2f", r / g }') of the goal's req/s"
	if ((p99_goal)) && ! holds "$ns_p99 <= $ng_p99"; then
		reasons+="; p99 $(awk -v a="$ns_p99" -v b="$ng_p99" 'BEGIN { printf "%.2f", a / b }')× nginx's"
	fi
	[[ -z $errors ]] || reasons+="; failed requests"
	local goal_text="≥ ${goal}× nginx req/s"
	((p99_goal)) && goal_text+=", p99 ≤ nginx's"
	row "$id" "$what" "$goal_text" \
		"${ns_rps} req/s = **${ratio}×** nginx (pairs ${rmin}–${rmax}); p99 ${ns_p99} µs; ${ns_cpu} µs CPU/req${errors}" \
		"nginx $NGINX_VERSION: ${ng_rps} req/s; p99 ${ng_p99} µs; ${ng_cpu} µs CPU/req" "$(met_or "$reasons")"
}

if skipped 1; then
	row 1 "HTTPS keep-alive (HTTP/1.1 over TLS)" "≥ 1.15× nginx req/s, p99 ≤ nginx's" "skipped" "—" "—"
else
	proxy_target 1a "HTTPS keep-alive, HTTP/1.1 over TLS, RSA 2048 certificate" 1.15 1 https-rsa MODE=https KEY_TYPE=rsa
	proxy_target 1b "HTTPS keep-alive, HTTP/1.1 over TLS, ECDSA P-256 certificate" 1.15 1 https-ecdsa MODE=https KEY_TYPE=ecdsa
fi
if skipped 2; then
	row 2 "HTTP/2 over TLS and cleartext" "≥ 1.1× nginx req/s" "skipped" "—" "—"
else
	proxy_target 2a "HTTP/2 over TLS (ALPN h2, RSA 2048), $T2_STREAMS streams per connection" 1.1 0 h2tls MODE=h2tls KEY_TYPE=rsa H2_STREAMS="$T2_STREAMS"
	proxy_target 2b "HTTP/2 cleartext (prior knowledge), $T2_STREAMS streams per connection" 1.1 0 h2c MODE=h2 H2_STREAMS="$T2_STREAMS"
fi
if skipped 3; then
	row 3 "HTTP/1.1 POST" "≥ 1.1× nginx req/s" "skipped" "—" "—"
else
	proxy_target 3a "HTTP/1.1 POST, 1 KiB body" 1.1 0 post-1k MODE=post BODY_SIZE=1024
	proxy_target 3b "HTTP/1.1 POST, 256 KiB body" 1.1 0 post-256k MODE=post BODY_SIZE=262144
fi
if skipped 4; then
	row 4 "HTTP/1.1 GET" "≥ ${T4_GOAL}× nginx req/s" "skipped" "—" "—"
else
	proxy_target 4 "HTTP/1.1 GET keep-alive (issue 5's target)" "$T4_GOAL" 0 http MODE=http
fi

# --- the cluster -----------------------------------------------------------------------------------

CLUSTER=$TMP/cluster
if ! (skipped 5 && skipped 6); then
	log "writing $INGRESSES Ingresses as manifests ($(elapsed))"
	"$GEN" --ingresses "$INGRESSES" --endpoint-addr "$BACKEND" "$CLUSTER" 2>"$OUT_DIR/gen-manifests.txt" ||
		die "gen-manifests failed: $(cat "$OUT_DIR/gen-manifests.txt")"
	cat "$OUT_DIR/gen-manifests.txt" >&2
	CHECK=$OUT_DIR/check.json
	"$SLUICE" check --json "$CLUSTER" >"$CHECK" || die "sluice check rejects the generated manifests (see $CHECK)"
	grep -q '"diagnostics": \[\]' "$CHECK" && grep -q '"source_errors": \[\]' "$CHECK" ||
		die "sluice check reports diagnostics or source errors on the generated manifests (see $CHECK)"
	log "sluice check: $(grep -c '"host":' "$CHECK") hosts, no diagnostic"
fi

# A fresh copy of DIR (default: the cluster) for each probe (they change files).
fresh_copy() {
	rm -rf "$TMP/run"
	cp -r "${1:-$CLUSTER}" "$TMP/run"
	echo "$TMP/run"
}

# probe MODE OUTFILE ARGS... : runs the propagation probe pinned to the load generator's CPU,
# on a fresh copy of the cluster unless ARGS name --manifests.
probe() {
	local mode=$1 out=$2
	shift 2
	local args=(--sluice "$SLUICE" --backend "$BACKEND"
		--http-port "$HTTP_PORT" --https-port "$HTTPS_PORT" --admin-port "$ADMIN_PORT"
		--server-cpu "$SERVER_CPU")
	[[ " $* " == *" --manifests "* ]] || args+=(--manifests "$(fresh_copy)")
	[[ -n $DEBOUNCE_MS ]] && args+=(--debounce-ms "$DEBOUNCE_MS")
	note_busy
	taskset -c "$LOADGEN_CPU" "$PROBE" "$mode" "${args[@]}" "$@" >"$out" 2>"$out.log" ||
		die "propagation $mode failed: $(tail -20 "$out.log")"
	note_busy
}

# --- target 5: a new application ------------------------------------------------------------------

# newapp_rows ID_LIVE ID_GONE MODE_TEXT FILE: target 5's two rows from a `propagation newapp`
# output.
newapp_rows() {
	local live=$1 gone=$2 how=$3 out=$4 failed reasons
	failed=$(($(val "$out" wrk_non2xx) + $(val "$out" wrk_socket_errors) + $(val "$out" poll_errors)))
	local load="wrk $(val "$out" wrk_rps) req/s on an existing host throughout, **$failed failed** (non-2xx $(val "$out" wrk_non2xx), socket errors $(val "$out" wrk_socket_errors), probe errors $(val "$out" poll_errors))"
	local p99 full
	for phase in live gone; do
		p99=$(val "$out" "${phase}_p99_ms") full=$(val "$out" "${phase}_full_rebuilds")
		reasons=""
		holds "$p99 < 30" || reasons+="; p99 $(over "$p99" 30)"
		((full == 0)) || reasons+="; $full full rebuilds"
		((failed == 0)) || reasons+="; $failed failed requests"
		if [[ $phase == live ]]; then
			row "$live" "new application (1 Ingress, 2 Services, 2 EndpointSlices, one change), $INGRESSES Ingresses, $how: write → first 200 through the proxy, under load" \
				"p99 < 30 ms, no full rebuild, 0 failed requests" \
				"p50 $(val "$out" live_p50_ms) ms, **p99 $p99 ms**, max $(val "$out" live_max_ms) ms ($(val "$out" changes) applications); Sluice's apply p50 $(val "$out" live_took_p50_ms) ms; tables made: $(val "$out" live_updates) (**$full full**); $load" \
				"30 ms" "$(met_or "$reasons")"
		else
			row "$gone" "… its removal: → first 404 on its host" "p99 < 30 ms, no full rebuild" \
				"p50 $(val "$out" gone_p50_ms) ms, **p99 $p99 ms**, max $(val "$out" gone_max_ms) ms; Sluice's apply p50 $(val "$out" gone_took_p50_ms) ms; tables made: $(val "$out" gone_updates) (**$full full**)" \
				"30 ms" "$(met_or "$reasons")"
		fi
	done
}

if skipped 5; then
	row 5 "new application, live and removed" "p99 < 30 ms, no full rebuild" "skipped" "—" "—"
else
	log "target 5: propagation newapp, $T5_CHANGES applications under wrk -c$WRK_CONNECTIONS ($(elapsed))"
	out=$OUT_DIR/target5-newapp.txt
	probe newapp "$out" --changes "$T5_CHANGES" --connections "$WRK_CONNECTIONS"
	newapp_rows 5a 5b "manifests mode" "$out"
fi

# --- target 6: memory ------------------------------------------------------------------------------

if skipped 6; then
	row 6 "memory" "< 100 MB, within 10% after 1,000 changes" "skipped" "—" "—"
else
	log "target 6: propagation memory --change newapp, $MEMORY_CHANGES changes ($(elapsed))"
	out=$OUT_DIR/target6-memory.txt
	probe memory "$out" --change newapp --changes "$MEMORY_CHANGES" --connections "$WRK_CONNECTIONS" --traffic-s "$TRAFFIC_S"
	before=$(val "$out" rss_before_mb) after=$(val "$out" rss_after_mb) growth=$(val "$out" rss_growth_pct)
	reasons=""
	holds "$before < 100" || reasons+="; $(over "$before" 100) in RSS"
	holds "$growth <= 10" || reasons+="; grows $growth%"
	row 6 "memory: VmRSS with $INGRESSES Ingresses, across $MEMORY_CHANGES changes (a new application, its removal, in turn)" \
		"< 100 MB, within 10% after the changes" \
		"**$before MB** after load + ${TRAFFIC_S}s traffic → **$after MB** after $MEMORY_CHANGES changes ($(val "$out" rss_growth_mb) MB, $growth%); peak (VmHWM) $(val "$out" hwm_mb) MB; tables made: $(val "$out" updates); every 100: $(val "$out" rss_samples_mb)" \
		"100 MB, +10%" "$(met_or "$reasons")"
fi

# --- target 7: many certificates -------------------------------------------------------------------

if skipped 7; then
	row 7 "TLS hosts with certificates of their own" "within 5% of one certificate; rotation < 30 ms" "skipped" "—" "—"
else
	log "target 7: $INGRESSES hosts with their own certificates, and one certificate for all ($(elapsed))"
	TLS_MULTI=$TMP/tls-multi TLS_SINGLE=$TMP/tls-single
	"$GEN" --ingresses "$INGRESSES" --tls "$TLS_MULTI" 2>"$OUT_DIR/gen-manifests-tls.txt" ||
		die "gen-manifests --tls failed: $(cat "$OUT_DIR/gen-manifests-tls.txt")"
	"$GEN" --ingresses "$INGRESSES" --tls-default "$TLS_SINGLE" 2>>"$OUT_DIR/gen-manifests-tls.txt" ||
		die "gen-manifests --tls-default failed: $(cat "$OUT_DIR/gen-manifests-tls.txt")"
	cat "$OUT_DIR/gen-manifests-tls.txt" >&2
	CHECK=$OUT_DIR/check-tls.json
	"$SLUICE" check --json "$TLS_MULTI" >"$CHECK" || die "sluice check rejects the --tls manifests (see $CHECK)"
	grep -q '"diagnostics": \[\]' "$CHECK" || die "sluice check reports diagnostics on the --tls manifests (see $CHECK)"
	out=$OUT_DIR/target7-tls.txt
	probe tls "$out" --manifests "$TLS_MULTI" --single-manifests "$TLS_SINGLE" --single-ports "$SINGLE_PORTS" \
		--clients "$TLS_CLIENTS" --pairs "$TLS_PAIRS" --duration-s "$TLS_DURATION" --rotations "$TLS_ROTATIONS"
	ratio=$(val "$out" hs_ratio) capacity=$(val "$out" capacity_ratio) errors=$(val "$out" handshake_errors)
	reasons=""
	holds "$ratio >= 0.95" || reasons+="; handshakes/s at $ratio× one certificate's"
	holds "$capacity >= 0.95" || reasons+="; CPU per handshake $(awk -v c="$capacity" 'BEGIN { printf "%.2f", 1 / c }')× one certificate's"
	((errors == 0)) || reasons+="; $errors failed handshakes"
	row 7a "TLS handshakes, $(val "$out" certificates) hosts with their own certificates (ECDSA P-256), SNI drawn at random" \
		"within 5% of one certificate (handshakes/s and CPU per handshake)" \
		"$(val "$out" multi_hs_per_s) handshakes/s = **$ratio×** one certificate's (pairs $(val "$out" hs_ratio_min)–$(val "$out" hs_ratio_max)); $(val "$out" multi_cpu_us_per_hs) µs CPU/handshake (capacity **$capacity×**); clients $(val "$out" client_busy_pct)% busy; $errors failed" \
		"one default certificate: $(val "$out" single_hs_per_s) handshakes/s, $(val "$out" single_cpu_us_per_hs) µs CPU/handshake" \
		"$(met_or "$reasons")"
	row 7b "memory per certificate" "reported" \
		"**$(val "$out" rss_per_cert_kb) kB** per certificate: VmRSS $(val "$out" multi_rss_mb) MB with $(val "$out" certificates) certificates (loaded in $(val "$out" multi_load_ms) ms)" \
		"$(val "$out" single_rss_mb) MB with one (loaded in $(val "$out" single_load_ms) ms)" "—"
	if ((TLS_ROTATIONS > 0)); then
		p99=$(val "$out" rotation_p99_ms)
		reasons=""
		holds "$p99 < 30" || reasons+="; p99 $(over "$p99" 30)"
		(($(val "$out" rotation_errors) == 0)) || reasons+="; $(val "$out" rotation_errors) failed handshakes"
		row 7c "certificate rotation: one host's Secret rewritten → a handshake with its name presents the new certificate" \
			"< 30 ms" \
			"p50 $(val "$out" rotation_p50_ms) ms, **p99 $p99 ms**, max $(val "$out" rotation_max_ms) ms ($TLS_ROTATIONS rotations); Sluice's apply p50 $(val "$out" rotation_took_p50_ms) ms; tables made: $(val "$out" rotation_updates)" \
			"30 ms" "$(met_or "$reasons")"
	fi
fi

# --- the table -------------------------------------------------------------------------------------

if ((BUSY_SEEN)); then QUIET="no: builds ran during the measurements; wall-clock figures are inflated, CPU figures less so"; else QUIET=yes; fi
CLUSTER_TEXT=""
[[ -f $OUT_DIR/gen-manifests.txt ]] &&
	CLUSTER_TEXT=" on $(grep '^wrote' "$OUT_DIR/gen-manifests.txt" | head -1 | sed 's/^wrote //; s/, to .*//')"
{
	echo
	echo "## Issue 15 targets: $(date -u +%Y-%m-%d), commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- . || echo '+changes'), $(nproc) CPUs"
	echo
	echo "| # | target | goal | measured | baseline | met? |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	echo "- Load generators on CPU $LOADGEN_CPU, Sluice/nginx/backends on CPU $SERVER_CPU. Targets 1-4: bench/proxy-vs-nginx.sh, $PAIRS alternating pair(s) of ${DURATION}s runs per row (medians; ±10% between identical proxies is noise), both proxies writing access logs."
	echo "- Targets 5-7 run \`sluice serve --manifests --workers 1\` (debounce ${DEBOUNCE_MS:-10 (default)} ms)$CLUSTER_TEXT; target 7 on the same cluster with a certificate per host, against a second Sluice with one default certificate."
	echo "- Machine quiet during the measurements: $QUIET."
	echo "- Full outputs: $OUT_DIR. Total time: $(elapsed)."
} | tee "$OUT_DIR/table.md"
