#!/usr/bin/env bash
# Issue 5's performance targets, measured end to end, printed as one Markdown table:
#
#   1. proxy throughput, HTTP/1.1 keep-alive, one worker each: >= 1.3x nginx's requests/s with
#      p99 <= nginx's (bench/proxy-vs-nginx.sh, MODE=http); HTTPS and h2c reported alongside
#   2. translation of 10,000 Ingresses / 20,000 Services / 50,000 endpoints: a full rebuild
#      < 100 ms (the criterion translate bench), an endpoint-only change < 5 ms (propagation
#      apply: Sluice's own took_ms of each apply; also an Ingress change, now incremental)
#   3. propagation: from a manifest written to the first request served by the new route,
#      p99 < 100 ms with 10,000 Ingresses loaded, under wrk load, zero failed requests
#      (propagation propagate)
#   4. memory: RSS with 10,000 Ingresses < 150 MB, flat across 1,000 changes (propagation
#      memory; "flat": less than 5% growth)
#   5. route lookup p99 < 1 µs with 10,000 hosts and regex paths (the lookup-p99 binary of
#      the bench crate, when it exists)
#
# Machine set-up as shared/docs/performance.md prescribes for 2 cores: load generators (wrk,
# h2load, the probes) on LOADGEN_CPU, Sluice, nginx and the backends on SERVER_CPU.
#
# Usage: bench/targets.sh                  (builds excluded: about 8 minutes, plus target 4's 1,000
#                                          changes at one full apply each, 0.4-0.8 s today: 7-13 min)
#        T1_PAIRS=1 T1_DURATION=3 MEMORY_CHANGES=100 PROPAGATION_CHANGES=50 bench/targets.sh
#                                          (a quick check that everything works)
#
# Environment (defaults in brackets):
#   INGRESSES [10000]         the synthetic cluster's size (gen-manifests --ingresses)
#   T1_MODES [http https h2]  proxy-vs-nginx.sh modes run for target 1 (http decides it)
#   T1_DURATION [5] T1_PAIRS [3] T1_WARMUP [2]   their DURATION, PAIRS and WARMUP
#   APPLY_CHANGES [20]        target 2: Ingress changes, and as many endpoint changes
#   TRANSLATE_BENCH [1]       target 2: also run the criterion translate bench (10,000 case, ~20 s)
#   PROPAGATION_CHANGES [200] target 3: new hosts written under load
#   MEMORY_CHANGES [1000]     target 4: consecutive configuration changes
#   WRK_CONNECTIONS [16]      targets 3 and 4: wrk connections loading an existing route
#   TRAFFIC_S [5]             target 4: seconds of traffic before measuring memory
#   DEBOUNCE_MS []            Sluice's --debounce-ms in targets 2-4 (empty: its default, 10)
#   SKIP []                   targets not to run, e.g. "1 5"
#   LOADGEN_CPU [0] SERVER_CPU [1]
#   QUIET_WAIT [120]          seconds to wait for running builds before target 1 (see
#                             proxy-vs-nginx.sh)
#   OUT_DIR [target/bench-targets]  where every step's full output and the table are written
#   PROBE_PORT_BASE [28490]   Sluice's HTTP, HTTPS, admin ports and the backend's: 4 ports from
#                             there (target 1 uses proxy-vs-nginx.sh's, 28480-28486)
#   KEEP_TMP [0]              1 keeps the generated manifests
#
# Needs cargo, wrk, taskset, curl (and what proxy-vs-nginx.sh installs: nginx, openssl,
# h2load); installs what is missing with apt-get.
set -euo pipefail

INGRESSES=${INGRESSES:-10000}
T1_MODES=${T1_MODES:-http https h2}
T1_DURATION=${T1_DURATION:-5}
T1_PAIRS=${T1_PAIRS:-3}
T1_WARMUP=${T1_WARMUP:-2}
APPLY_CHANGES=${APPLY_CHANGES:-20}
TRANSLATE_BENCH=${TRANSLATE_BENCH:-1}
PROPAGATION_CHANGES=${PROPAGATION_CHANGES:-200}
MEMORY_CHANGES=${MEMORY_CHANGES:-1000}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-16}
TRAFFIC_S=${TRAFFIC_S:-5}
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

for v in INGRESSES T1_DURATION T1_PAIRS T1_WARMUP APPLY_CHANGES PROPAGATION_CHANGES MEMORY_CHANGES \
	WRK_CONNECTIONS TRAFFIC_S LOADGEN_CPU SERVER_CPU QUIET_WAIT PROBE_PORT_BASE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
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
rm -f "$OUT_DIR"/*.txt "$OUT_DIR"/*.md

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

# --- the cluster -------------------------------------------------------------------------------

CLUSTER=$TMP/cluster
log "writing $INGRESSES Ingresses as manifests ($(elapsed))"
"$GEN" --ingresses "$INGRESSES" --endpoint-addr "$BACKEND" "$CLUSTER" 2>"$OUT_DIR/gen-manifests.txt" ||
	die "gen-manifests failed: $(cat "$OUT_DIR/gen-manifests.txt")"
cat "$OUT_DIR/gen-manifests.txt" >&2
CHECK=$OUT_DIR/check.json
"$SLUICE" check --json "$CLUSTER" >"$CHECK" || die "sluice check rejects the generated manifests (see $CHECK)"
grep -q '"diagnostics": \[\]' "$CHECK" && grep -q '"source_errors": \[\]' "$CHECK" ||
	die "sluice check reports diagnostics or source errors on the generated manifests (see $CHECK)"
log "sluice check: $(grep -c '"host":' "$CHECK") hosts, no diagnostic"

# A fresh copy of the cluster for each probe (they change files).
fresh_copy() {
	rm -rf "$TMP/run"
	cp -r "$CLUSTER" "$TMP/run"
	echo "$TMP/run"
}

# probe MODE OUTFILE ARGS... : runs the propagation probe pinned to the load generator's CPU.
probe() {
	local mode=$1 out=$2
	shift 2
	local args=(--sluice "$SLUICE" --manifests "$(fresh_copy)" --backend "$BACKEND"
		--http-port "$HTTP_PORT" --https-port "$HTTPS_PORT" --admin-port "$ADMIN_PORT"
		--server-cpu "$SERVER_CPU")
	[[ -n $DEBOUNCE_MS ]] && args+=(--debounce-ms "$DEBOUNCE_MS")
	note_busy
	taskset -c "$LOADGEN_CPU" "$PROBE" "$mode" "${args[@]}" "$@" >"$out" 2>"$out.log" ||
		die "propagation $mode failed: $(tail -20 "$out.log")"
	note_busy
}

# val FILE KEY: the value of KEY=... in FILE.
val() { awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2) }' "$1"; }
# Whether awk expression $1 is true.
holds() { awk "BEGIN { exit !($1) }"; }
# How far MEASURED is over the LIMIT (for rows that fail): "1.6x the goal".
over() { awk -v m="$1" -v l="$2" 'BEGIN { printf "%.1fx the goal", m / l }'; }

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# --- target 1 ----------------------------------------------------------------------------------

# t1_cell FILE: "label rps p50 p99 cpu" of the nginx and sluice rows of a proxy-vs-nginx table.
t1_get() { # FILE KIND(nginx|sluice) COLUMN(rps|p50|p99|cpu)
	local col
	case $3 in rps) col=3 ;; p50) col=5 ;; p99) col=6 ;; cpu) col=7 ;; esac
	awk -F'|' -v k="$2" -v c="$col" '$2 ~ ("^ " k) { gsub(/ /, "", $c); print $c; exit }' "$1"
}
t1_ratio() { sed -n 's/.*per-pair ratio(s) \([0-9.]*\) (range \([0-9.]*\)–\([0-9.]*\)).*/\1 \2 \3/p' "$1"; }

if skipped 1; then
	row 1 "proxy throughput" "≥ 1.3× nginx req/s, p99 ≤ nginx" "skipped" "—" "—"
else
	for mode in $T1_MODES; do
		log "target 1: proxy-vs-nginx.sh MODE=$mode, $T1_PAIRS pair(s) of ${T1_DURATION}s ($(elapsed))"
		out=$OUT_DIR/target1-$mode.md
		note_busy
		MODE=$mode DURATION=$T1_DURATION PAIRS=$T1_PAIRS WARMUP=$T1_WARMUP SLUICE_BIN=$SLUICE \
			LOADGEN_CPU=$LOADGEN_CPU SERVER_CPU=$SERVER_CPU QUIET_WAIT=$QUIET_WAIT \
			"$ROOT/bench/proxy-vs-nginx.sh" >"$out" 2>"$out.log" ||
			die "proxy-vs-nginx.sh MODE=$mode failed: $(tail -20 "$out.log")"
		note_busy
		read -r ratio rmin rmax < <(t1_ratio "$out")
		ns_rps=$(t1_get "$out" sluice rps) ng_rps=$(t1_get "$out" nginx rps)
		ns_p99=$(t1_get "$out" sluice p99) ng_p99=$(t1_get "$out" nginx p99)
		ns_cpu=$(t1_get "$out" sluice cpu) ng_cpu=$(t1_get "$out" nginx cpu)
		grep -q 'Error responses and socket errors across all runs: 0\.' "$out" || errors=" (errors: see $out)"
		measured="${ns_rps} req/s = **${ratio}×** nginx (pairs ${rmin}–${rmax}); p99 ${ns_p99} µs; ${ns_cpu} µs CPU/req${errors:-}"
		baseline="nginx $(nginx -v 2>&1 | sed 's/^nginx version: nginx\///'): ${ng_rps} req/s; p99 ${ng_p99} µs; ${ng_cpu} µs CPU/req"
		case $mode in
		http)
			if holds "$ratio >= 1.3 && $ns_p99 <= $ng_p99"; then met=yes; else
				met="no: $(awk -v r="$ratio" 'BEGIN { printf "%.2f", r / 1.3 }') of the goal's req/s, p99 $(awk -v a="$ns_p99" -v b="$ng_p99" 'BEGIN { printf "%.2f", a / b }')× nginx's"
			fi
			row 1 "proxy throughput, HTTP/1.1 keep-alive, 1 worker" "≥ 1.3× nginx req/s, p99 ≤ nginx's" "$measured" "$baseline" "$met"
			;;
		https) row 1b "… over kept-alive HTTPS (reported)" "—" "$measured" "$baseline" "—" ;;
		h2) row 1c "… over h2c, h2load (reported)" "—" "$measured" "$baseline" "—" ;;
		*) row "1 ($mode)" "proxy-vs-nginx.sh MODE=$mode (reported)" "—" "$measured" "$baseline" "—" ;;
		esac
		errors=""
	done
fi

# --- target 2 ----------------------------------------------------------------------------------

if skipped 2; then
	row 2 "translation" "full < 100 ms, endpoints < 5 ms" "skipped" "—" "—"
else
	criterion="not run"
	if [[ $TRANSLATE_BENCH == 1 ]]; then
		log "target 2: cargo bench -p sluice-bench --bench translate -- 10000i ($(elapsed))"
		note_busy
		(cd "$ROOT" && cargo bench -p sluice-bench --bench translate -- 10000i) >"$OUT_DIR/translate-bench.txt" 2>&1 ||
			die "the translate bench failed: $(tail -20 "$OUT_DIR/translate-bench.txt")"
		note_busy
		# "time:   [150.12 ms 156.20 ms 160.31 ms]": the middle figure is the estimate.
		criterion=$(awk '/time:/ { gsub(/\[|\]/, ""); print $4, $5; exit }' "$OUT_DIR/translate-bench.txt")
	fi
	log "target 2: propagation apply, $APPLY_CHANGES changes of each kind ($(elapsed))"
	out=$OUT_DIR/target2-apply.txt
	probe apply "$out" --changes "$APPLY_CHANGES"
	# A changed Ingress alone on its hosts is an incremental update now: the full rebuild is
	# criterion's figure (translation alone, what every other change costs).
	p99=$(val "$out" ingress_took_p99_ms)
	if [[ $criterion == *" ms" ]]; then
		full=${criterion% ms}
		if holds "$full < 100"; then met=yes; else met="no: $(over "$full" 100)"; fi
	else
		met="not measured (TRANSLATE_BENCH=1 measures it)"
	fi
	row 2a "translation: full rebuild, $INGRESSES Ingresses" "< 100 ms" \
		"**$criterion** (criterion, translation alone); cold load $(val "$out" cold_load_ms) ms. One Ingress changed (an incremental update): p50 $(val "$out" ingress_took_p50_ms) ms, p99 $p99 ms (Sluice's took_ms, $APPLY_CHANGES changes), $(val "$out" ingress_cpu_mean_ms) ms CPU/apply, write→applied p50 $(val "$out" ingress_write_to_applied_p50_ms) ms (with debounce)" \
		"100 ms" "$met"
	p99=$(val "$out" endpoint_took_p99_ms)
	if holds "$p99 < 5"; then met=yes; else met="no: $(over "$p99" 5)"; fi
	row 2b "translation: endpoint-only change (one EndpointSlice)" "< 5 ms" \
		"p50 $(val "$out" endpoint_took_p50_ms) ms, **p99 $p99 ms**; $(val "$out" endpoint_cpu_mean_ms) ms CPU/apply; write→applied p50 $(val "$out" endpoint_write_to_applied_p50_ms) ms" \
		"5 ms" "$met"
fi

# --- target 3 ----------------------------------------------------------------------------------

if skipped 3; then
	row 3 "propagation" "p99 < 100 ms, 0 failures" "skipped" "—" "—"
else
	log "target 3: propagation propagate, $PROPAGATION_CHANGES new hosts under wrk -c$WRK_CONNECTIONS ($(elapsed))"
	out=$OUT_DIR/target3-propagate.txt
	probe propagate "$out" --changes "$PROPAGATION_CHANGES" --connections "$WRK_CONNECTIONS"
	p99=$(val "$out" propagation_p99_ms)
	failed=$(($(val "$out" wrk_non2xx) + $(val "$out" wrk_socket_errors) + $(val "$out" poll_errors)))
	met=yes
	holds "$p99 < 100" || met="no: p99 $(over "$p99" 100)"
	((failed == 0)) || met="no: $failed failed requests"
	row 3 "propagation: manifest written → first 200 on the new host, $INGRESSES Ingresses, under load" \
		"p99 < 100 ms, 0 failed requests" \
		"p50 $(val "$out" propagation_p50_ms) ms, **p99 $p99 ms**, max $(val "$out" propagation_max_ms) ms ($PROPAGATION_CHANGES hosts; apply took p50 $(val "$out" apply_took_p50_ms) ms); wrk $(val "$out" wrk_rps) req/s, $(val "$out" wrk_requests) requests, **$failed failed** (non-2xx $(val "$out" wrk_non2xx), socket errors $(val "$out" wrk_socket_errors), probe errors $(val "$out" poll_errors))" \
		"100 ms, 0 failures" "$met"
fi

# --- target 4 ----------------------------------------------------------------------------------

if skipped 4; then
	row 4 "memory" "< 150 MB, flat" "skipped" "—" "—"
else
	log "target 4: propagation memory, $MEMORY_CHANGES changes ($(elapsed))"
	out=$OUT_DIR/target4-memory.txt
	probe memory "$out" --changes "$MEMORY_CHANGES" --connections "$WRK_CONNECTIONS" --traffic-s "$TRAFFIC_S"
	before=$(val "$out" rss_before_mb) after=$(val "$out" rss_after_mb) growth=$(val "$out" rss_growth_pct)
	met=yes
	holds "$before < 150 && $after < 150" || met="no: $(over "$after" 150) in RSS"
	if ! holds "$growth < 5"; then
		if [[ $met == yes ]]; then met="no: grows $growth%"; else met+="; grows $growth%"; fi
	fi
	row 4 "memory: VmRSS with $INGRESSES Ingresses, across $MEMORY_CHANGES changes" "< 150 MB, flat (< 5% growth)" \
		"**$before MB** after load + ${TRAFFIC_S}s traffic → **$after MB** after $MEMORY_CHANGES changes ($(val "$out" rss_growth_mb) MB, $growth%); peak (VmHWM) $(val "$out" hwm_mb) MB; every 100: $(val "$out" rss_samples_mb)" \
		"150 MB" "$met"
fi

# --- target 5 ----------------------------------------------------------------------------------

if skipped 5; then
	row 5 "route lookup" "p99 < 1 µs" "skipped" "—" "—"
elif [[ -f $ROOT/bench/src/bin/lookup-p99.rs || -f $ROOT/bench/src/bin/lookup-p99/main.rs ]]; then
	log "target 5: cargo run --release -p sluice-bench --bin lookup-p99 ($(elapsed))"
	out=$OUT_DIR/target5-lookup.txt
	note_busy
	(cd "$ROOT" && taskset -c "$SERVER_CPU" cargo run --release -q -p sluice-bench --bin lookup-p99) >"$out" 2>&1 ||
		die "lookup-p99 failed: $(tail -20 "$out")"
	note_busy
	ns=$(tail -1 "$out" | sed -n 's/^lookup_p99_ns=\([0-9.]*\)$/\1/p')
	[[ -n $ns ]] || die "lookup-p99's last line is not lookup_p99_ns=<n>: $(tail -3 "$out")"
	if holds "$ns < 1000"; then met=yes; else met="no: $(over "$ns" 1000)"; fi
	row 5 "route lookup, 10,000 hosts with regex paths" "p99 < 1 µs" "**p99 $ns ns**" "1,000 ns" "$met"
else
	row 5 "route lookup, 10,000 hosts with regex paths" "p99 < 1 µs" "not yet available (no lookup-p99 binary in bench/)" "1,000 ns" "—"
fi

# --- the table ---------------------------------------------------------------------------------

if ((BUSY_SEEN)); then QUIET="no: builds ran during the measurements; wall-clock figures are inflated, CPU figures less so"; else QUIET=yes; fi
{
	echo
	echo "## Issue 5 targets: $(date -u +%Y-%m-%d), commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- . || echo '+changes'), $(nproc) CPUs"
	echo
	echo "| # | target | goal | measured | baseline | met? |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	echo "- Load generators on CPU $LOADGEN_CPU, Sluice/nginx/backends on CPU $SERVER_CPU; target 1: $T1_PAIRS alternating pair(s) of ${T1_DURATION}s runs per mode (medians; ±10% between identical proxies is noise)."
	echo "- Targets 2-4 run \`sluice serve --manifests --workers 1\` (debounce ${DEBOUNCE_MS:-10 (default)} ms) on $(head -1 "$OUT_DIR/gen-manifests.txt" | sed 's/^wrote //; s/, to .*//')."
	echo "- Machine quiet during the measurements: $QUIET."
	echo "- Full outputs: $OUT_DIR. Total time: $(elapsed)."
} | tee "$OUT_DIR/table.md"
