//! ingress-nginx's `nginx_ingress_controller_nginx_process_*` metrics, which its Grafana
//! dashboard charts (connections, memory, CPU), for Sluice's one process: read from `/proc`
//! and the proxy's counters when `/metrics` is scraped, never on the request path.
//!
//! ingress-nginx reads NGINX's master and workers and `stub_status`. Here the process is
//! Sluice's: `num_procs` is 1, `connections{state="active"}` counts open client connections
//! (NGINX's `reading`, `writing` and `waiting` split them by what the connection is doing,
//! which Sluice does not track), `connections_total` counts accepted ones (`accepted` and
//! `handled` alike: Sluice drops none it accepted), `requests_total` the requests answered.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use sluice_proxy::ControllerLabels;

/// The process metrics, updated at each scrape.
pub struct ProcessCollector {
    connections: IntGaugeVec,
    connections_total: IntCounterVec,
    requests: IntCounter,
    cpu: Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    procs: IntGauge,
    start: Gauge,
    read: IntCounter,
    write: IntCounter,
}

/// What `/proc/self` says of the process.
#[derive(Debug, Default, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    virtual_bytes: i64,
    resident_bytes: i64,
    start_seconds: f64,
}

impl ProcessCollector {
    /// The metrics, with the controller's constant labels as every ingress-nginx series.
    pub fn new(controller: &ControllerLabels) -> Self {
        let opts = |name: &str, help: &str| {
            Opts::new(format!("nginx_ingress_controller_nginx_process_{name}"), help)
                .const_label("controller_namespace", &controller.namespace)
                .const_label("controller_class", &controller.class)
                .const_label("controller_pod", &controller.pod)
        };
        let connections = IntGaugeVec::new(
            opts("connections", "Current number of client connections with state {active}"),
            &["state"],
        )
        .expect("valid metric");
        let connections_total = IntCounterVec::new(
            opts("connections_total", "Total number of connections with state {accepted, handled}"),
            &["state"],
        )
        .expect("valid metric");
        let requests =
            IntCounter::with_opts(opts("requests_total", "Total number of client requests"))
                .expect("valid metric");
        let cpu = Counter::with_opts(opts("cpu_seconds_total", "Cpu usage in seconds"))
            .expect("valid metric");
        let resident =
            IntGauge::with_opts(opts("resident_memory_bytes", "number of bytes of memory in use"))
                .expect("valid metric");
        let virtual_memory =
            IntGauge::with_opts(opts("virtual_memory_bytes", "number of bytes of memory in use"))
                .expect("valid metric");
        let procs =
            IntGauge::with_opts(opts("num_procs", "number of processes")).expect("valid metric");
        let start = Gauge::with_opts(opts(
            "oldest_start_time_seconds",
            "start time in seconds since 1970/01/01",
        ))
        .expect("valid metric");
        let read = IntCounter::with_opts(opts("read_bytes_total", "number of bytes read"))
            .expect("valid metric");
        let write = IntCounter::with_opts(opts("write_bytes_total", "number of bytes written"))
            .expect("valid metric");
        Self {
            connections,
            connections_total,
            requests,
            cpu,
            resident,
            virtual_memory,
            procs,
            start,
            read,
            write,
        }
    }

    /// Every metric, for their descriptions and their collection alike.
    fn parts(&self) -> [&dyn Collector; 10] {
        [
            &self.connections,
            &self.connections_total,
            &self.requests,
            &self.cpu,
            &self.resident,
            &self.virtual_memory,
            &self.procs,
            &self.start,
            &self.read,
            &self.write,
        ]
    }

    /// Reads the counters and `/proc/self` into the metrics.
    fn update(&self) {
        let (open, accepted) = sluice_proxy::connection_counts();
        self.connections.with_label_values(&["active"]).set(open as i64);
        for state in ["accepted", "handled"] {
            advance(&self.connections_total.with_label_values(&[state]), accepted);
        }
        advance(&self.requests, sluice_proxy::requests_total());
        self.procs.set(1);
        if let Some(stat) = read_stat() {
            let delta = stat.cpu_seconds - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            self.resident.set(stat.resident_bytes);
            self.virtual_memory.set(stat.virtual_bytes);
            self.start.set(stat.start_seconds);
        }
        if let Ok(io) = std::fs::read_to_string("/proc/self/io") {
            let field = |name: &str| {
                io.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            };
            if let Some(n) = field("read_bytes") {
                advance(&self.read, n);
            }
            if let Some(n) = field("write_bytes") {
                advance(&self.write, n);
            }
        }
    }
}

/// Moves a counter up to `to` (never down: a counter only grows).
fn advance(counter: &IntCounter, to: u64) {
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        self.parts().into_iter().flat_map(|c| c.collect()).collect()
    }
}

/// CPU time, memory and start time of this process, from `/proc/self/stat`,
/// `/proc/self/status` and the boot time of `/proc/stat`; `None` where `/proc` cannot be read.
fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    parse_stat(&stat, &status, &boot)
}

/// Clock ticks per second of `/proc`'s times: Linux's `USER_HZ`, 100 on the architectures
/// Sluice is built for (what `sysconf(_SC_CLK_TCK)` answers there).
const TICKS: f64 = 100.0;

fn parse_stat(stat: &str, status: &str, boot: &str) -> Option<Stat> {
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    // Field numbers of proc(5) less 3 (pid, comm and state come before `fields[1]`).
    let num = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let btime: f64 = boot.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // `VmRSS:     1234 kB`.
    let kib = |name: &str| -> Option<i64> {
        let line = status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
        Some(line.trim().strip_suffix("kB")?.trim().parse::<i64>().ok()? * 1024)
    };
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / TICKS,
        virtual_bytes: kib("VmSize")?,
        resident_bytes: kib("VmRSS")?,
        start_seconds: btime + num(22)? / TICKS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read_past_a_command_with_spaces() {
        let stat = "4242 (sluice (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 \
                    0 9 0 12345 1048576 300 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let status = "Name:\tsluice\nVmSize:\t  2048 kB\nVmRSS:\t   300 kB\n";
        let s = parse_stat(stat, status, boot).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_seconds: 3.0,
                virtual_bytes: 2048 * 1024,
                resident_bytes: 300 * 1024,
                start_seconds: 1700000000.0 + 123.45,
            }
        );
        assert!(parse_stat("garbage", status, boot).is_none());
    }

    #[test]
    fn this_process_is_read() {
        let c = ProcessCollector::new(&ControllerLabels::default());
        let families = c.collect();
        let names: Vec<_> = families.iter().map(|f| f.name().to_string()).collect();
        assert!(names.contains(&"nginx_ingress_controller_nginx_process_cpu_seconds_total".into()));
        let resident = c.resident.get();
        assert!(resident > 1024 * 1024, "a process holds more than 1 MiB: {resident}");
        assert!(c.start.get() > 1.6e9, "started after 2020: {}", c.start.get());
    }
}
