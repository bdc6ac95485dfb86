//! Numbers in the prose that would drift silently, checked against where they come from.
//!
//! The README tells a newcomer how much the first build compiles; that number is read here from
//! `Cargo.lock`, the file cargo itself builds from, so a dependency added or dropped fails this
//! test until the sentence is updated.

use std::path::Path;

/// Reads a file of the repository, relative to its root.
fn repository_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn the_readme_states_how_many_packages_cargo_lock_lists() {
    let lock = repository_file("Cargo.lock");
    // Every package is one `[[package]]` table; the workspace's own have no `source` (they are
    // built from this checkout, not fetched from a registry).
    let packages: Vec<&str> = lock.split("[[package]]").skip(1).collect();
    let workspace = packages
        .iter()
        .filter(|table| !table.lines().any(|line| line.starts_with("source = ")))
        .count();
    assert!(workspace > 0, "Cargo.lock names no workspace package");
    let sentence = format!(
        "`Cargo.lock` lists {} packages (this workspace's {workspace} among them;",
        packages.len()
    );
    let readme = repository_file("README.md");
    // The sentence may be wrapped anywhere in the Markdown source.
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&sentence),
        "README.md should say: {sentence} (update the number in \"The two commands\")"
    );
}
