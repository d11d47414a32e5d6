#!/usr/bin/env bash
# Instructions, cache misses and TLB misses per route lookup, per case of lookup-p99's mix,
# counted by valgrind's simulator: the same figures on every run, however busy the machine.
#
#   bench/lookup-misses.sh                 # builds examples/lookup_misses, then three runs
#   LOOKUP_MISSES_BIN=/tmp/old bench/lookup-misses.sh   # another build of it, to compare
#
# Three callgrind runs of examples/lookup_misses (see its doc comment), each counting only the
# per-case lookup functions:
#   - caches as this project's machines have them (AMD EPYC): L1d 32 KiB 8-way, then the
#     last level once as the 1 MiB L2 ("L2 miss": at least an L3 access, ~40-50 ns) and once as
#     the 32 MiB L3 ("L3 miss": memory, ~100+ ns; few, since nothing else runs here, where a
#     proxy's other work and its neighbours would evict the table);
#   - the data TLB, modelled as a cache of 4 KiB "lines": 64 entries fully associative (L1
#     DTLB), then 2,048 entries 16-way (L2 DTLB). An L2 DTLB miss is a page walk.
# valgrind simulates no prefetcher and no out-of-order overlap: misses are counted, not timed.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
BIN=${LOOKUP_MISSES_BIN:-}
if [[ -z $BIN ]]; then
    CARGO_INCREMENTAL=0 cargo build --release -q -p sluice-bench --example lookup_misses
    BIN=target/release/examples/lookup_misses
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run NAME D1 LL: per case, "case Ir D1misses LLmisses" (totals over the run).
run() {
    local name=$1 d1=$2 ll=$3
    valgrind --tool=callgrind --cache-sim=yes --D1="$d1" --LL="$ll" \
        --collect-atstart=no --toggle-collect='*lookup_misses::case_*' \
        --callgrind-out-file="$TMP/$name.out" "$BIN" "$ROUNDS" >"$TMP/$name.stdout" 2>"$TMP/$name.log"
    callgrind_annotate --inclusive=yes --show=Ir,D1mr,D1mw,DLmr,DLmw "$TMP/$name.out" |
        awk '/lookup_misses::case_[0-9]/ {
            n = 0
            for (i = 1; i <= NF && n < 5; i++) {
                if ($i ~ /^\(/) continue
                v = $i; gsub(",", "", v); if (v == ".") v = 0
                if (v ~ /^[0-9]+$/) { x[n++] = v }
            }
            match($0, /case_[0-9]+/); c = substr($0, RSTART + 5, RLENGTH - 5)
            print c, x[0], x[1] + x[2], x[3] + x[4]
        }' | sort -n >"$TMP/$name.txt"
}

run l2 32768,8,64 1048576,8,64
run l3 32768,8,64 33554432,16,64
run tlb 262144,64,4096 8388608,16,4096

per_case=$(head -1 "$TMP/l2.stdout" | awk '{print $1}')
echo "Per lookup ($per_case lookups per case; $BIN):"
echo
echo "| case | instructions | L1d misses | L2 misses | L3 misses | L1 DTLB misses | L2 DTLB misses |"
echo "|---|---|---|---|---|---|---|"
join "$TMP/l2.txt" "$TMP/l3.txt" | join - "$TMP/tlb.txt" |
    while read -r c ir d1 l2 _ _ l3 _ t1 t2; do
        name=$(sed -n "s/^case_$c: //p" "$TMP/l2.stdout")
        awk -v n="$name" -v p="$per_case" -v ir="$ir" -v d1="$d1" -v l2="$l2" -v l3="$l3" \
            -v t1="$t1" -v t2="$t2" 'BEGIN {
                printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                    n, ir / p, d1 / p, l2 / p, l3 / p, t1 / p, t2 / p }'
    done
awk '{ ir += $2; d1 += $3; l2 += $4 } END { printf "%s %s %s\n", ir, d1, l2 }' "$TMP/l2.txt" >"$TMP/all.l2"
read -r ir d1 l2 <"$TMP/all.l2"
l3=$(awk '{ s += $4 } END { print s }' "$TMP/l3.txt")
read -r t1 t2 < <(awk '{ a += $3; b += $4 } END { print a, b }' "$TMP/tlb.txt")
awk -v p="$((per_case * $(wc -l <"$TMP/l2.txt")))" -v ir="$ir" -v d1="$d1" -v l2="$l2" -v l3="$l3" -v t1="$t1" \
    -v t2="$t2" 'BEGIN {
        printf "| **all** | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
            ir / p, d1 / p, l2 / p, l3 / p, t1 / p, t2 / p }'
