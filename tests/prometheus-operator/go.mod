// Pins the Prometheus Operator module, whose example/prometheus-operator-crd/ holds the
// CustomResourceDefinitions of ServiceMonitor and PrometheusRule: the Kubernetes suite installs
// them into its kube-apiserver to validate the chart's objects (tests/prometheus-operator/crds
// fetches them). After changing the version, update go.sum (`go mod download -json
// github.com/prometheus-operator/prometheus-operator@VERSION` prints both sums) and commit both.
module sluice.dev/tests/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
