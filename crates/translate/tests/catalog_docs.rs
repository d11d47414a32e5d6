//! The README's table of annotation families names every annotation a family reads (and so
//! the catalogue calls implemented or accepted) and every ConfigMap key a family reads: the
//! documentation cannot claim less, or fall behind, what the code does.

use sluice_translate::annotations::FAMILIES;

/// The README's "Annotations and ConfigMap keys" section.
fn section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README is readable");
    let start = readme.find("### Annotations and ConfigMap keys").expect("the section");
    let end = start + readme[start..].find("### The proxy").expect("the next section");
    readme[start..end].to_string()
}

#[test]
fn the_readme_names_every_annotation_and_configmap_key_families_read() {
    let section = section();
    let mut missing = Vec::new();
    for family in FAMILIES {
        let names =
            family.annotations.iter().map(|(n, _)| *n).chain(family.configmap_keys.iter().copied());
        for name in names {
            if !section.contains(&format!("`{name}`")) {
                missing.push(format!("{} ({})", name, family.module));
            }
        }
        if !section.contains(family.module) {
            missing.push(format!("the family {}", family.module));
        }
    }
    assert!(missing.is_empty(), "the README's annotation table lacks: {missing:?}");
}
