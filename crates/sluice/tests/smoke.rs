//! The basic path through the real binary: manifests in, traffic routed, admin answers.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_path_to_real_backends() {
    let (alpha, beta) = (echo("alpha").await, echo("beta").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write(
        "svc.yaml",
        &format!("{}---\n{}", service("alpha", &[alpha]), service("beta", &[beta])),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "web",
            "public.example.com",
            &[("/alpha", "Prefix", "alpha"), ("/beta", "Exact", "beta")],
            &[],
        ),
    );
    let s = Sluice::start(m.path(), &[]);

    let r = get(&s.url("/alpha/x?q=1"), Some("Public.Example.com:8080")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "alpha");
    assert_eq!(r.json()["path"], "/alpha/x?q=1", "the path and query reach the backend unchanged");
    assert_eq!(r.headers["server"], "sluice");

    assert_eq!(get(&s.url("/beta"), Some("public.example.com")).await.backend(), "beta");
    let miss = get(&s.url("/beta/x"), Some("public.example.com")).await;
    assert_eq!(miss.status, 404, "Exact /beta does not match /beta/x");
    assert_eq!(miss.headers["server"], "sluice");
    assert_eq!(get(&s.url("/alpha"), Some("other.example.com")).await.status, 404);

    assert_eq!(get(&s.admin_url("/healthz"), None).await.status, 200);
    assert_eq!(get(&s.admin_url("/readyz"), None).await.status, 200);
    let backends = get(&s.admin_url("/debug/backends"), None).await.json();
    let names: Vec<_> = backends
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default-alpha-80", "default-beta-80"]);
    assert_eq!(backends[0]["endpoints"][0]["port"], alpha.port().to_string());
}
