//! The layering ARCHITECTURE.md claims, read from the sources: within each crate no module
//! imports one that imports it (no circle of `crate::` / `super::` paths between files);
//! `reflector-sys` depends on no crate of the workspace; the binary's sources name no
//! `reflector_sys` item (it reaches the system through `reflector-io`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `.rs` files under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file under `src`: `lib.rs` / `main.rs` are the root (empty),
/// `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without its test module (the test modules are last, as clippy's
/// `items_after_test_module` keeps them) and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named in `code` that starts at `crate::`, `super::`, `self::` or a child
/// module of `module` (one of `children`), as module segments from the root; grouped imports
/// (`use crate::a::{b, c::d}`) are expanded one level.
fn paths(code: &str, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':') || !ident(bytes[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && ident(bytes[j]) {
            j += 1;
        }
        let first = &code[i..j];
        if !code[j..].starts_with("::") {
            i = j;
            continue;
        }
        let base: Vec<String> = match first {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => {
                let mut m = module.to_vec();
                m.pop();
                while code[j + 2..].starts_with("super::") {
                    m.pop();
                    j += "super::".len();
                }
                m
            }
            child if children.contains(child) => {
                j = i;
                module.to_vec()
            }
            _ => {
                i = j;
                continue;
            }
        };
        if first == "crate" || first == "self" || first == "super" {
            j += 2;
        }
        let mut segs = base.clone();
        let mut grouped = false;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            segs.push(code[s..j].to_string());
            if !code[j..].starts_with("::") {
                break;
            }
            j += 2;
            if code[j..].starts_with('{') {
                let end = code[j..].find('}').map_or(bytes.len(), |e| j + e);
                for item in code[j + 1..end].split(',') {
                    let mut sub = segs.clone();
                    sub.extend(
                        item.trim().split("::").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
                    );
                    out.push(sub);
                }
                j = end;
                grouped = true;
                break;
            }
        }
        if segs.len() > base.len() && !grouped {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

/// The import graph between the files of the crate at `crate_dir`: module → modules it names.
fn graph(crate_dir: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m[module.len()].clone())
            .collect();
        let mut to = BTreeSet::new();
        for path in paths(&text, module, &children) {
            // The deepest file module the path reaches.
            let target = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p));
            if let Some(target) = target
                && &target != module
                && !target.is_empty()
            {
                to.insert(target);
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// A circle in `edges`, if there is one.
fn circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        at: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(at.clone(), 1);
        stack.push(at.clone());
        for next in edges.get(at).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut names: Vec<String> = stack[from..].iter().map(|m| m.join("::")).collect();
                    names.push(next.join("::"));
                    return Some(names);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(at.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if state.get(m).copied().unwrap_or(0) == 0
            && let Some(c) = visit(m, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let crates = std::fs::read_dir(workspace().join("crates")).unwrap();
    let mut checked = 0;
    for dir in crates {
        let dir = dir.unwrap().path();
        let edges = graph(&dir);
        assert!(!edges.is_empty(), "{}: no sources read", dir.display());
        if let Some(c) = circle(&edges) {
            panic!("{}: import circle {}", dir.display(), c.join(" -> "));
        }
        checked += 1;
    }
    assert!(checked >= 6, "every crate checked");
}

#[test]
fn the_check_finds_a_circle_where_there_is_one() {
    let module = vec!["a".to_string()];
    let children = BTreeSet::from(["k".to_string()]);
    let named = paths(
        "use super::b::{C, d::E};\nfn f() { crate::c::g(); other::h(); x::crate::y(); }\npub use k::L;",
        &module,
        &children,
    );
    let v = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(named, vec![v("b::C"), v("b::d::E"), v("c::g"), v("a::k::L")]);
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(circle(&edges), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    edges.insert(m("c"), BTreeSet::new());
    assert_eq!(circle(&edges), None);
}

#[test]
fn the_sys_crate_is_a_leaf() {
    let manifest = std::fs::read_to_string(workspace().join("crates/reflector-sys/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    for line in deps.lines() {
        assert!(!line.trim_start().starts_with("reflector"), "reflector-sys depends on {line}");
    }
    let mut files = Vec::new();
    sources(&workspace().join("crates/reflector-sys/src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for name in ["reflector_core", "reflector_bpf", "reflector_io"] {
                assert!(!line.contains(name), "{} names {name}: {line}", f.display());
            }
        }
    }
}

#[test]
fn the_binary_reaches_the_system_through_reflector_io() {
    let manifest = std::fs::read_to_string(workspace().join("crates/reflector/Cargo.toml")).unwrap();
    let deps = manifest.split("\n[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    assert!(!deps.contains("reflector-sys"), "the binary depends on reflector-sys");
    let mut files = Vec::new();
    sources(&workspace().join("crates/reflector/src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("reflector_sys"), "{} names reflector_sys", f.display());
    }
}
