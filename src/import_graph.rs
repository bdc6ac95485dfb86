//! `src/` reads bottom-up: no file imports, directly or through others, a file that imports it.
//!
//! This test reads every file of `src/` as text, finds what each one names of the others
//! (`use crate::...`, `use super::...`, `crate::x::y` in code, `child::` in a file that declares
//! `mod child`), and fails on any circle, printing it. Comments, doc links and `#[cfg(test)]`
//! modules do not count: a test may reach anywhere, and a doc link imports nothing.
//!
//! The order it prints (`reading_order_is_printed`, with `--nocapture`) is a reading order for
//! a newcomer: every file after all the files it imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`["routes", "auth"]`), and the file that holds it.
type Modules = BTreeMap<Vec<String>, PathBuf>;

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` but this one, by module path.
fn modules() -> Modules {
    fn walk(dir: &Path, prefix: &[String], out: &mut Modules) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => panic!("cannot read {}: {err}", dir.display()),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") && name != "import_graph" {
                let mut module = prefix.to_vec();
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    module.push(name);
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = Modules::new();
    walk(&source_root(), &[], &mut out);
    out
}

/// The code of a file: comments blanked, `#[cfg(test)]` items cut.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.peek() {
                // `mod x;`: one line. `mod x { ... }`: by convention the rest of the file.
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        let line = match line.find("//") {
            // `//` inside a string (a URL) keeps the line; comments start a line or follow code.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        if let Some(open) = tree.find('{') {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.len().saturating_sub(1)];
            let mut base = prefix.to_vec();
            base.extend(
                head.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                go(&base, &inner[start..], out);
            }
        } else {
            let mut path = prefix.to_vec();
            let tree = tree.split(" as ").next().unwrap_or(tree);
            path.extend(
                tree.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            out.push(path);
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

/// The paths a file names: its `use` items, and `crate::`/`super::`/`child::` paths in code.
fn named_paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    // `use` items (possibly over several lines).
    let mut without_uses = String::new();
    while let Some(at) = rest.find("use ") {
        let starts_item = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}');
        without_uses.push_str(&rest[..at]);
        if !starts_item {
            without_uses.push_str("use ");
            rest = &rest[at + 4..];
            continue;
        }
        let Some(end) = rest[at..].find(';') else {
            break;
        };
        paths.extend(expand(&rest[at + 4..at + end]));
        rest = &rest[at + end + 1..];
    }
    without_uses.push_str(rest);
    // Paths written in code.
    let bytes = without_uses.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || (!is_ident(bytes[i - 1]) && bytes[i - 1] != b':')) {
            let mut j = i;
            while j < bytes.len() && (is_ident(bytes[j]) || without_uses[j..].starts_with("::")) {
                j += if bytes[j] == b':' { 2 } else { 1 };
            }
            let path: Vec<String> = without_uses[i..j]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if path.len() > 1 {
                let first = path[0].as_str();
                if first == "crate" || first == "super" || children.contains(first) {
                    paths.push(path);
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

/// The file a path names, seen from `module`: the longest prefix that is a module of `src/`.
fn resolve(module: &[String], path: &[String], modules: &Modules) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
        Some("self") => module.to_vec(),
        // A child module (`mod x;` in this file), or an outside crate.
        Some(_) => {
            let mut child = module.to_vec();
            child.push(path[0].clone());
            if !modules.contains_key(&child) {
                return None;
            }
            module.to_vec()
        }
        None => return None,
    };
    let skip = usize::from(matches!(
        path.first().map(String::as_str),
        Some("crate" | "super" | "self")
    ));
    absolute.extend(path[skip..].iter().cloned());
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// Every file's imports of other files of `src/`.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (module, path) in &modules {
        if module.is_empty() {
            // lib.rs only declares the modules.
            continue;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => panic!("cannot read {}: {err}", path.display()),
        };
        let code = code(&text);
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
        let mut edges = BTreeSet::new();
        for named in named_paths(&code, &children) {
            if let Some(target) = resolve(module, &named, &modules)
                && &target != module
                && !target.is_empty()
            {
                edges.insert(target);
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "lib".to_owned()
    } else {
        module.join("::")
    }
}

/// A circle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    let mut stack = Vec::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut stack))
}

#[test]
fn src_has_no_import_circle() {
    let graph = graph();
    assert!(graph.len() > 20, "found only {} files in src/", graph.len());
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<String> = cycle.iter().map(|m| show(m)).collect();
        panic!(
            "src/ has an import circle: {}\n(every file must read bottom-up: move what both \
             sides need into a file that imports neither)",
            names.join(" -> ")
        );
    }
}

#[test]
fn the_checker_sees_the_imports_it_must() {
    let graph = graph();
    let module = |path: &str| path.split("::").map(str::to_owned).collect::<Vec<_>>();
    let imports = |from: &str, to: &str| {
        graph
            .get(&module(from))
            .is_some_and(|e| e.contains(&module(to)))
    };
    // A grouped `use crate::{...}` item, a `super::` item, a child named in code.
    assert!(
        imports("startup", "routes"),
        "{:?}",
        graph.get(&module("startup"))
    );
    assert!(imports("routes::auth", "routes::mounted"));
    assert!(imports("routes", "routes::auth"));
    // And a circle is found when there is one.
    let mut circular = graph.clone();
    circular
        .entry(module("backend_kind"))
        .or_default()
        .insert(module("startup"));
    assert!(find_cycle(&circular).is_some());
}

#[test]
fn reading_order_is_printed() {
    let graph = graph();
    let mut placed: Vec<Vec<String>> = Vec::new();
    while placed.len() < graph.len() {
        let before = placed.len();
        for (module, edges) in &graph {
            if !placed.contains(module) && edges.iter().all(|e| placed.contains(e)) {
                placed.push(module.clone());
            }
        }
        assert!(placed.len() > before, "no reading order: there is a circle");
    }
    let order: Vec<String> = placed.iter().map(|m| show(m)).collect();
    println!(
        "reading order of src/, bottom-up:\n  {}",
        order.join("\n  ")
    );
}
