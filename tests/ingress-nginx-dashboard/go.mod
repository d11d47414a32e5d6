// Pins ingress-nginx's Go module, whose deploy/grafana/dashboards/nginx.json is the Grafana
// dashboard operators run against ingress-nginx: crates/sluice/tests/dashboards.rs evaluates
// every query of it against a real Prometheus scraping Sluice (./fetch fetches it). ingress-nginx
// tags its releases `controller-vX.Y.Z`, which are not module versions, and the module proxy
// offers none of them: the pin is a pseudo-version, the main branch just after
// controller-v1.11.0 (its chart's appVersion); its dashboard's queries are those of
// controller-v1.15.1's, the last release (compared on 2026-12-05). After changing it, update go.sum (`go mod
// download -json k8s.io/ingress-nginx@VERSION` prints both sums) and commit both.
module sluice.dev/tests/ingress-nginx-dashboard

go 1.26.0

require k8s.io/ingress-nginx v0.0.0-20240708192948-52c50467d67d
