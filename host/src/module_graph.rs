//! The host's modules import each other in layers, never in a circle.
//!
//! A folder (or file) directly under `src/` is one concern: `store`,
//! `crypto`, `data`, `compliance`, `service`, `api`… A circle between two
//! of them means neither can be understood, tested or moved into a crate of
//! its own without the other; the shared low-level part belongs in a module
//! below both (see the crates under `crates/`, which cargo keeps in layers).
//! This test reads the sources, builds the graph of `crate::` (and escaping
//! `super::`) paths between those top-level modules, and fails on any
//! cycle, naming it and the lines that make it.
//!
//! Second-level modules are not nodes: within one concern a parent and its
//! children refer to each other by design (`data/mod.rs` defines the
//! [`Vault`](crate::data::Vault) its children use and re-exports their
//! types), and such a circle neither crosses a concern nor stops the
//! concern from being extracted whole. A child's imports count as its
//! top-level module's. Code in comments and strings is ignored; test
//! modules count (a test that needs a higher layer is a dependency too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where an edge comes from: file and line.
type Origin = (String, usize);

/// From a top-level module to another: the lines that import it.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Origin>>>;

#[test]
fn the_host_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles among the host's top-level modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::create_dir(src.join("a")).unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "//! Uses crate::c in a comment only.\npub mod x;\nuse super::c;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/x.rs"),
        "use crate::{store, b::Thing};\nconst S: &str = \"crate::c\";\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "fn f() { crate::a::x::g() }\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "#[cfg(test)]\nmod tests { use super::*; }\n",
    )
    .unwrap();
    let graph = module_graph(src);
    let edges: Vec<(&str, &str)> = graph
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |to| (from.as_str(), to.as_str())))
        .collect();
    assert_eq!(edges, [("a", "b"), ("a", "c"), ("b", "a")]);
    let cycles = cycles(&graph);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].starts_with("a -> b -> a"), "{}", cycles[0]);
    assert!(cycles[0].contains("a/x.rs:1"), "{}", cycles[0]);
    assert!(cycles[0].contains("b.rs:1"), "{}", cycles[0]);
}

/// The top-level modules `lib.rs` declares.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    code_only(&lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.trim().to_owned())
        })
        .collect()
}

fn module_graph(src: &Path) -> Graph {
    let modules = top_level_modules(src);
    let mut graph = Graph::new();
    for top in &modules {
        let dir = src.join(top);
        let files = if dir.is_dir() {
            rust_files(&dir)
        } else {
            vec![src.join(format!("{top}.rs"))]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let relative = file.strip_prefix(src).expect("under src");
            let path = module_path(relative);
            for (line, target) in references(&code_only(&text), &path) {
                if target != *top && modules.contains(&target) {
                    graph
                        .entry(top.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .push((relative.display().to_string(), line));
                }
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A file's module path: `data/mod.rs` is `[data]`, `data/consent.rs` is
/// `[data, consent]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The source with comments and the contents of string and character
/// literals blanked out (line breaks kept, so line numbers still hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_prefix(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            let end: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            out.push('"');
            i += 2 + hashes;
            while i < chars.len() && !chars[i..].starts_with(&end) {
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push('"');
            i += end.len();
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime.
            let literal_len = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|c| *c == '\'')
                    .map(|p| p + 3)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match literal_len {
                Some(len) => {
                    out.push_str("' '");
                    i += len;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `at` starts a raw string (`r"`, `br#"`), not ends a
/// word (`for"`, `r#type`).
fn raw_prefix(chars: &[char], at: usize) -> bool {
    let word = |c: &char| c.is_alphanumeric() || *c == '_';
    let before = chars[..at].iter().rev().take_while(|c| word(c)).count();
    let hashes = chars[at + 1..].iter().take_while(|c| **c == '#').count();
    (before == 0 || (before == 1 && chars[at - 1] == 'b'))
        && chars.get(at + 1 + hashes) == Some(&'"')
}

/// The top-level modules a file's code refers to, with the line of each
/// reference. `path` is the file's own module path, to resolve `super::`.
fn references(code: &str, path: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut at = 0;
    while at < bytes.len() {
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b'$' || bytes[at - 1] == b':') {
            at += 1;
            continue;
        }
        let rest = &code[at..];
        let (base, after): (Vec<String>, usize) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") {
            let mut ups = 0;
            let mut len = 0;
            while code[at + len..].starts_with("super::") {
                ups += 1;
                len += "super::".len();
            }
            let keep = path.len().saturating_sub(ups);
            (path[..keep].to_vec(), len)
        } else {
            at += 1;
            continue;
        };
        let line = line_of(at);
        let tail = &code[at + after..];
        let mut firsts = Vec::new();
        if let Some(group) = tail.strip_prefix('{') {
            // `crate::{a::X, b::{Y, Z}}`: the first name of each element.
            let mut depth = 0;
            let mut start = true;
            for (offset, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        start = false;
                        let name: String = group[offset..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        firsts.push(name);
                    }
                    _ => {}
                }
            }
        } else {
            firsts.push(
                tail.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
        for first in firsts {
            let top = base.first().cloned().unwrap_or(first);
            if !top.is_empty() && top != "self" {
                found.push((line, top));
            }
        }
        at += after;
    }
    found
}

/// Every cycle of the graph, one per strongly connected component: the
/// shortest circle through its first module, with the lines of each step.
fn cycles(graph: &Graph) -> Vec<String> {
    let nodes: BTreeSet<&String> = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.keys()))
        .collect();
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flat_map(|to| to.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for node in nodes {
        if reported.contains(node) || !reaches(node).contains(node) {
            continue;
        }
        // The component: every module `node` reaches that reaches it back.
        let component: BTreeSet<String> = reaches(node)
            .into_iter()
            .filter(|other| reaches(other).contains(node))
            .collect();
        reported.extend(component.iter().cloned());
        let circle = shortest_circle(graph, node);
        let mut text = circle.join(" -> ");
        for step in circle.windows(2) {
            let origins = &graph[&step[0]][&step[1]];
            let lines: Vec<String> = origins
                .iter()
                .map(|(file, line)| format!("{file}:{line}"))
                .collect();
            text.push_str(&format!(
                "\n    {} -> {}: {}",
                step[0],
                step[1],
                lines.join(", ")
            ));
        }
        if component.len() > circle.len() - 1 {
            let all: Vec<&str> = component.iter().map(String::as_str).collect();
            text.push_str(&format!("\n    (the whole circle: {})", all.join(", ")));
        }
        out.push(text);
    }
    out
}

/// The shortest path from `start` back to itself (breadth first).
fn shortest_circle(graph: &Graph, start: &String) -> Vec<String> {
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flat_map(|to| to.keys()) {
            if next == start {
                let mut circle = vec![node.clone()];
                let mut at = &node;
                while at != start {
                    at = &previous[at];
                    circle.push(at.clone());
                }
                circle.reverse();
                circle.push(start.clone());
                return circle;
            }
            if !previous.contains_key(next) {
                previous.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    unreachable!("called only for a module on a cycle")
}
