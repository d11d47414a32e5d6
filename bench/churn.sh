#!/usr/bin/env bash
# Reliability under churn and control-plane outages, against a real kube-apiserver and etcd
# (the long forms of two tests of crates/sluice/tests/kube.rs, whose short forms the test
# command runs):
#   - churn_under_load_cuts_no_stream_and_leaks_nothing: CHANGES changes (default 1000) over
#     Ingresses, Services, EndpointSlices, a TLS Secret and the ConfigMap, under HTTP and HTTPS
#     load with 50 WebSockets and 50 gRPC streams open throughout;
#   - api_server_outages_cost_no_request: etcd and kube-apiserver both down for OUTAGE_SECS
#     (default 60) under load.
# The tests fail on any failed request, cut stream, or growth of the proxy's memory or
# descriptors; this script prints their figures. The tests run one after the other, so that
# neither measures the other's load.
#
#   bench/churn.sh                        # 1,000 changes, a one-minute outage
#   CHANGES=200 OUTAGE_SECS=10 bench/churn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
SLUICE_CHURN_CHANGES=${CHANGES:-1000} SLUICE_OUTAGE_SECS=${OUTAGE_SECS:-60} \
    scripts/kube-e2e churn_under_load api_server_outages_cost_no_request \
    --nocapture --test-threads=1 >"$log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
    cat "$log"
    echo "error: the churn or outage test failed (see above)" >&2
    exit "$status"
fi
echo "==> figures (sluice as the suite builds it: debug profile)"
grep -oE "(churn|outage): .*" "$log"
