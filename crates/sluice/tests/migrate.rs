//! `sluice migrate` through the real binary: on a directory written here, and on the corpus of
//! real Ingresses beside the project (see `sluice_testkit::corpus`), read where it
//! lies and checked against the statistics published with it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> PathBuf {
    sluice_testkit::corpus(&repo())
}

fn run(args: &[&str], path: &std::path::Path) -> (Output, String) {
    let out = sluice().arg("migrate").arg(path).args(args).output().expect("sluice runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// The number in the row of `stats.md` whose first cell is `what`.
fn stat(stats: &str, what: &str) -> usize {
    stats
        .lines()
        .find_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.get(1) == Some(&what)).then(|| cells[2].parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("stats.md has no row {what:?}"))
}

#[test]
fn the_corpus_report_matches_its_statistics_and_the_readme() {
    let corpus = corpus();
    let stats = std::fs::read_to_string(corpus.join("stats.md")).unwrap();
    let (out, text) = run(&["-o", "json", "--fail-on", "never"], &corpus.join("ingresses"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();

    // Every Ingress of the corpus is read, and gets one verdict.
    let t = &report["totals"];
    let total = t["ingresses"].as_u64().unwrap() as usize;
    assert_eq!(total, stat(&stats, "Ingress objects"));
    let verdicts: usize = ["moves_as_is", "moves_with_differences", "answers_503"]
        .iter()
        .map(|k| t[k].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(verdicts, total);
    assert_eq!(report["ingresses"].as_array().unwrap().len(), total);

    // Each annotation is counted on as many Ingresses as the corpus's own count says.
    let annotations = report["annotations"].as_array().unwrap();
    let mut compared = 0;
    // The annotation table's rows: `| # | `name` | Ingress objects | documented |`.
    for line in stats.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1].parse::<usize>().is_err() || !cells[2].starts_with('`') {
            continue;
        }
        let name = cells[2].trim_matches('`');
        let count: usize = cells[3].parse().unwrap();
        let mine = annotations.iter().find(|a| a["name"] == name);
        assert_eq!(mine.map(|a| a["ingresses"].as_u64().unwrap() as usize), Some(count), "{name}");
        compared += 1;
    }
    assert_eq!(compared, stat(&stats, "distinct `nginx.ingress.kubernetes.io/` annotation names"));
    assert_eq!(
        report["snippets"]["ingresses"].as_u64().unwrap() as usize,
        stat(&stats, "objects with a `*-snippet` annotation")
    );
    let modsecurity = report["snippets"]["modsecurity"].as_u64().unwrap();
    let enabled = annotations.iter().find(|a| a["name"] == "enable-modsecurity").unwrap();
    assert!(modsecurity >= enabled["ingresses"].as_u64().unwrap(), "{modsecurity}");

    // Findings say what happens: a refused snippet explains itself, a difference quotes its
    // sentence.
    let findings: Vec<&serde_json::Value> = report["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["annotations"].as_array().unwrap())
        .collect();
    for f in &findings {
        let fate = f["fate"].as_str().unwrap();
        if fate != "exact" {
            assert!(f["note"].as_str().is_some_and(|n| !n.is_empty()), "{f}");
        }
    }

    // The README's figures are this report's, under the default ConfigMap and with the
    // snippet gates open, as the clusters of the corpus had them.
    let (_, markdown) = run(&["-o", "markdown", "--fail-on", "never"], &corpus.join("ingresses"));
    readme_has_the_verdict_rows(&markdown);
    let gates = Manifests::new();
    gates.write(
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ingress-nginx-controller\n  namespace: ingress-nginx\ndata:\n  allow-snippet-annotations: \"true\"\n  annotations-risk-level: Critical\n",
    );
    let out = sluice()
        .arg("migrate")
        .arg(corpus.join("ingresses"))
        .arg(gates.path())
        .args(["-o", "json", "--fail-on", "never"])
        .output()
        .unwrap();
    let open: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &open["snippets"];
    assert_eq!(s["gates_open"], true);
    // The snippet subset reads some of them, and never more than carry one.
    let (nginx, covered) = (s["nginx"].as_u64().unwrap(), s["nginx_covered"].as_u64().unwrap());
    assert!(covered > 0 && covered <= nginx, "{s}");
    assert!(
        open["totals"]["answers_503"].as_u64() < report["totals"]["answers_503"].as_u64(),
        "opening the gates moves Ingresses: {s}"
    );
    let out = sluice()
        .arg("migrate")
        .arg(corpus.join("ingresses"))
        .arg(gates.path())
        .args(["-o", "markdown", "--fail-on", "never"])
        .output()
        .unwrap();
    readme_has_the_verdict_rows(&String::from_utf8_lossy(&out.stdout));
}

/// Fails unless README.md holds the verdict rows of this Markdown report.
fn readme_has_the_verdict_rows(markdown: &str) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<&str> = markdown
        .lines()
        .filter(|l| {
            ["| moves as is |", "| moves with differences |", "| will answer 503 |"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{markdown}");
    for row in rows {
        assert!(readme.contains(row), "README.md lacks the corpus figure {row:?}: update it");
    }
}

#[test]
fn exit_status_gates_on_what_the_operator_chooses() {
    let m = Manifests::new();
    m.write("svc.yaml", &service("web", &["127.0.0.1:8080".parse().unwrap()]));
    m.write(
        "mirror.yaml",
        &ingress(
            "mirrored",
            "m.example.com",
            &[("/", "Prefix", "web")],
            &[("nginx.ingress.kubernetes.io/mirror-target", "http://copy.example/")],
        ),
    );
    // Differences alone pass the default gate, not the strict one.
    let (out, text) = run(&[], m.path());
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("mirror-target (differs)"), "{text}");
    let (out, _) = run(&["--fail-on", "differences"], m.path());
    assert_eq!(out.status.code(), Some(1));

    // An Ingress that will answer 503 fails the default gate, and says why.
    m.write(
        "snippet.yaml",
        &ingress(
            "lua",
            "l.example.com",
            &[("/", "Prefix", "web")],
            &[("nginx.ingress.kubernetes.io/auth-snippet", "access_by_lua_block {}")],
        ),
    );
    let (out, text) = run(&[], m.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    let row = text.lines().find(|l| l.contains("/lua")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("will answer 503") && row.contains("auth-snippet (503)"), "{row}");
    assert!(text.contains("snippet.yaml:"), "the details name the file: {text}");
    let (out, _) = run(&["--fail-on", "never"], m.path());
    assert_eq!(out.status.code(), Some(0));

    // A path that cannot be read is another status, with the error.
    let (out, _) = run(&[], &m.path().join("missing"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read manifests"));
}

#[test]
fn markdown_and_json_carry_the_same_verdicts() {
    let m = Manifests::new();
    m.write("svc.yaml", &service("web", &["127.0.0.1:8080".parse().unwrap()]));
    m.write("a.yaml", &ingress("plain", "p.example.com", &[("/", "Prefix", "web")], &[]));
    let (_, md) = run(&["-o", "markdown"], m.path());
    assert!(md.contains("| `default/plain` | sluice | moves as is |  |"), "{md}");
    // The IngressClass was not read: ingress-nginx's controller is assumed.
    assert!(
        md.contains(
            "`sluice serve --ingress-class sluice --controller-class k8s.io/ingress-nginx`"
        ),
        "{md}"
    );
    let (_, json) = run(&["-o", "json"], m.path());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ingresses"][0]["verdict"], "moves-as-is");
    assert_eq!(v["totals"]["moves_as_is"], 1);
}
