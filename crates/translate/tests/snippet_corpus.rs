//! The real-world corpus (beside the project: see `sluice_testkit::corpus`;
//! read from there, never copied): how many of its Ingresses carrying a
//! `configuration-snippet` or `server-snippet` the safe subset covers fully with the gates
//! open, and why the others are refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_manifests::{Object, parse_str};
use sluice_translate::annotations::snippet::{Level, read};

const PREFIX: &str = "nginx.ingress.kubernetes.io/";

#[test]
fn the_subset_covers_the_corpus_snippets_it_can() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = sluice_testkit::corpus(&repo).join("ingresses");
    let dir = dir.as_path();
    let (mut with, mut covered) = (0, 0);
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(objects) = parse_str(&text) else { continue };
        for (_, object) in objects {
            let Object::Ingress(ing) = object else { continue };
            let annotations = ing.metadata.annotations.clone().unwrap_or_default();
            let snippets: Vec<(Level, &String)> =
                [("configuration-snippet", Level::Location), ("server-snippet", Level::Server)]
                    .into_iter()
                    .filter_map(|(k, level)| {
                        Some((level, annotations.get(&format!("{PREFIX}{k}"))?))
                    })
                    .collect();
            if snippets.is_empty() {
                continue;
            }
            with += 1;
            let mut ok = true;
            for (level, text) in snippets {
                if let Err(why) = read(text, level, &mut Vec::new()) {
                    ok = false;
                    // The directive, without the line: what the subset lacks.
                    eprintln!("{}: {why}", path.display());
                    let what = why.split(": ").nth(1).unwrap_or(&why).to_string();
                    *refused.entry(what).or_default() += 1;
                }
            }
            covered += usize::from(ok);
        }
    }
    eprintln!("{covered} of {with} Ingresses with a configuration- or server-snippet covered");
    eprintln!("refused by directive: {refused:#?}");
    assert!(with > 0, "the corpus has snippets");
    // What the subset was built for: the common header, return, rewrite and if snippets.
    assert!(covered * 3 >= with, "{covered} of {with}");
}
