//! The layers hold: each module imports only the modules its row of the
//! table allows (the table of `docs/ARCHITECTURE.md`), the module graph
//! has no cycle, and the pure core imports no async runtime, web
//! framework, storage engine, network or files.
//!
//! A dependency is any `crate::<module>` path in a module's code (comments
//! and its unit-test files aside). A new import fails here until the table
//! says it is allowed, and the table itself must stay acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module → the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    // pure core
    ("encoding", &[]),
    ("fsutil", &[]),
    ("serve", &[]),
    ("tree", &[]),
    ("note", &["encoding", "tree"]),
    ("tiles", &["encoding"]),
    ("audit", &["encoding", "tree"]),
    ("registry", &["audit"]),
    ("error", &["store", "tree"]),
    ("access", &["audit", "encoding", "error"]),
    ("wire", &["audit", "encoding", "note", "registry"]),
    ("verify", &["audit", "note", "tree"]),
    // storage, the sequencer, derived state
    ("store", &["tree"]),
    ("artifacts", &["encoding", "fsutil"]),
    ("privacy", &["audit", "fsutil"]),
    ("mlflow", &["registry"]),
    ("metrics", &["store"]),
    (
        "log",
        &["audit", "error", "metrics", "note", "store", "tree"],
    ),
    ("state", &["access", "audit", "registry", "store"]),
    // the service
    (
        "ledger",
        &[
            "access",
            "artifacts",
            "audit",
            "error",
            "log",
            "privacy",
            "registry",
            "state",
        ],
    ),
    (
        "trace",
        &["audit", "error", "log", "tree", "verify", "wire"],
    ),
    (
        "witness",
        &[
            "encoding", "fsutil", "log", "note", "serve", "store", "tree", "wire",
        ],
    ),
    (
        "api",
        &[
            "access",
            "artifacts",
            "audit",
            "encoding",
            "error",
            "fsutil",
            "ledger",
            "log",
            "mlflow",
            "registry",
            "tiles",
            "trace",
            "tree",
            "wire",
        ],
    ),
    (
        "server",
        &[
            "api",
            "artifacts",
            "fsutil",
            "ledger",
            "log",
            "metrics",
            "mlflow",
            "note",
            "privacy",
            "registry",
            "serve",
            "state",
            "store",
            "witness",
        ],
    ),
    // verification and clients
    ("client", &["note", "wire"]),
    (
        "auditor",
        &["client", "note", "tiles", "tree", "verify", "wire"],
    ),
    (
        "monitor",
        &[
            "auditor", "client", "fsutil", "note", "tree", "verify", "wire",
        ],
    ),
    (
        "mirror",
        &["artifacts", "auditor", "client", "tiles", "tree", "verify"],
    ),
    (
        "report",
        &[
            "audit", "client", "encoding", "registry", "tree", "verify", "wire",
        ],
    ),
    (
        "cli",
        &[
            "artifacts",
            "audit",
            "auditor",
            "client",
            "encoding",
            "fsutil",
            "mlflow",
            "note",
            "registry",
            "report",
            "state",
            "store",
            "trace",
            "verify",
            "wire",
        ],
    ),
];

/// Modules that must not touch I/O or a runtime, and what they must not name.
const PURE: &[&str] = &[
    "encoding", "tree", "note", "tiles", "audit", "registry", "access", "wire", "verify",
];
const IMPURE: &[&str] = &[
    "tokio",
    "axum",
    "rocksdb",
    "reqwest",
    "hyper",
    "std::fs",
    "std::net",
    "crate::store",
    "crate::log",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code files of a module (a file or a directory), without its
/// unit-test files.
fn files(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                // Directories named `tests` hold unit tests.
                if p.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name()
                    .is_some_and(|n| n != "tests.rs" && n != "conformance.rs")
            {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file without comments and without inline test modules
/// (everything from `#[cfg(test)]` on, which by convention ends a file).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module a piece of code names as `crate::<module>`.
fn crate_deps(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::c};
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `crate::Error` is `crate::error::Error`, re-exported at the root.
        let name = if name == "Error" {
            "error".into()
        } else {
            name
        };
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn table() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect()
}

/// A cycle in a graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// The modules declared in `lib.rs`.
fn modules() -> BTreeSet<String> {
    std::fs::read_to_string(src().join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

#[test]
fn every_module_has_a_row_and_imports_only_what_it_may() {
    let allowed = table();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for m in modules() {
        let Some(may) = allowed.get(m.as_str()) else {
            problems.push(format!("{m} has no row in the layer table"));
            continue;
        };
        let mut deps = BTreeSet::new();
        for f in files(&m) {
            for d in crate_deps(&code(&f)) {
                if d != m {
                    if !may.contains(d.as_str()) {
                        problems.push(format!("{} uses crate::{d}", f.display()));
                    }
                    deps.insert(d);
                }
            }
        }
        graph.insert(m, deps);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(find_cycle(&graph), None, "the module graph has a cycle");
    // The table itself is acyclic, so allowing what it says cannot make one.
    let as_graph = allowed
        .iter()
        .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(find_cycle(&as_graph), None, "the layer table has a cycle");
}

#[test]
fn the_pure_core_does_no_io() {
    let mut checked = 0;
    for m in PURE {
        for f in files(m) {
            let text = code(&f);
            for banned in IMPURE {
                assert!(!text.contains(banned), "{} uses {banned}", f.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} files checked");
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    let deps = crate_deps(
        "use crate::log::Log;\nlet x = crate::tree::leaf_hash(b);\nuse crate::{a, b::c};\n",
    );
    assert_eq!(
        deps.into_iter().collect::<Vec<_>>(),
        vec!["a", "b", "log", "tree"]
    );
    assert!(crate_deps(&code_of("// crate::ledger in a comment\nfn f() {}\n")).is_empty());
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert!(find_cycle(&g).is_some());
}

fn code_of(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}
