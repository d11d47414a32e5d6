//! scratch
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let mut d = sluice_manifests::ManifestDir::new(dir);
    d.rescan().unwrap();
    let (snapshot, _) = d.snapshot();
    let table = sluice_translate::translate(&snapshot, &sluice_bench::settings());
    println!("{} routes", table.routes.len());
    std::mem::forget((d, snapshot, table));
}
