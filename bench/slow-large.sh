#!/usr/bin/env bash
# Slow and large bodies through the real binary (issue 14): a client reading a 1 GiB response
# slowly (fast path, general path, h2c) and a 1 GiB upload to a backend reading it slowly
# (request buffering on, off, and h2c). Prints each transfer's throughput and the proxy's peak
# resident memory (VmHWM of /proc/<pid>/status, reset before each transfer with clear_refs),
# and fails if any peak grew by 64 MiB or more over the resident memory before the transfer.
#
#   SLOW_LARGE_MIB [1024]      body size
#   SLOW_LARGE_RATE_MIB [64]   pace of the slow side, MiB/s (so 6 transfers of 16 s each)
#   PROFILE [release]          cargo profile of the test and the binary (release or dev)
#
# The short form (64 MiB) is crates/sluice/tests/slow_large.rs, run by scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
export SLOW_LARGE_MIB=${SLOW_LARGE_MIB:-1024} SLOW_LARGE_RATE_MIB=${SLOW_LARGE_RATE_MIB:-64}
echo "==> ${SLOW_LARGE_MIB} MiB at ${SLOW_LARGE_RATE_MIB} MiB/s, ${profile} build"
exec cargo test --profile "$profile" -p sluice --test slow_large slow_large_figures \
	-- --ignored --nocapture --test-threads 1
