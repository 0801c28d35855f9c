//! The top-level modules of `src/` form a DAG (STYLE: no module imports one that imports it
//! back), read from their `use crate::…` lines and inline `crate::x::` paths as
//! `../shared/tools/layering.py` reads them. Unit-test modules may reach anywhere.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Which top-level modules each top-level module of `src` uses.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if top == "main" || top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let used = graph.entry(top.clone()).or_default();
            for target in crate_uses(&text) {
                if target != top && target != "self" {
                    used.insert(target);
                }
            }
        }
    }
    graph
}

/// The first segments after `crate::` in `text` (its unit tests left out), braces included.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c::{d, e}, f};`: the first segment of each top-level item.
            let (mut depth, mut item) = (0, String::new());
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            found.extend(first_segment(&item));
        } else {
            found.extend(first_segment(rest));
        }
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.stack.contains(&w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn graph_text(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, used)| {
            format!(
                "{m:>16} -> {}",
                used.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_top_level_modules_form_a_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10,
        "read too few modules:\n{}",
        graph_text(&graph)
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles among the top-level modules: {found:?}\n{}",
        graph_text(&graph)
    );
}

#[test]
fn the_layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let uses = |m: &str| graph.get(m).cloned().unwrap_or_default();
    // What `app` wires never imports it; only the command line above it does.
    for (m, used) in &graph {
        if used.contains("app") {
            assert_eq!(m, "cli", "{m} imports app, which wires it");
        }
    }
    assert!(
        uses("science").is_empty(),
        "science uses {:?}",
        uses("science")
    );
    assert!(uses("error").is_empty(), "error uses {:?}", uses("error"));
    let web_domains = [
        "app",
        "cli",
        "state",
        "pages",
        "jobs",
        "files",
        "labellings",
        "spectra",
        "active_learning",
    ];
    // Below the web side: the worker, the queue under it and the job types under both.
    let forbidden: [(&str, &[&str]); 3] = [
        ("worker", &[]),
        ("queue", &["worker", "job_types"]),
        ("job_types", &["worker", "queue", "db"]),
    ];
    for (m, also) in forbidden {
        for high in web_domains.iter().chain(also) {
            assert!(
                !uses(m).contains(*high),
                "{m} -> {high}:\n{}",
                graph_text(&graph)
            );
        }
    }
    // The job types know no HTTP, database or page crate.
    for dir in ["job_types", "science"] {
        for entry in walk(&src.join(dir)) {
            let text = std::fs::read_to_string(&entry).unwrap();
            for web in ["actix_web::", "askama::", "sea_orm::", "sqlx::"] {
                assert!(!text.contains(web), "{} uses {web}", entry.display());
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_cycle_is_found() {
    let text = |s: &str| crate_uses(s);
    assert_eq!(
        text("use crate::{a::b, c::{d, e}, f};\nlet x = crate::g::h();\nfoocrate::z"),
        ["a", "c", "f", "g"].map(String::from).into()
    );
    let mut graph = Graph::new();
    graph.insert("app".into(), ["jobs".into()].into());
    graph.insert("jobs".into(), ["worker".into()].into());
    graph.insert("worker".into(), ["queue".into()].into());
    graph.insert("queue".into(), [].into());
    assert!(cycles(&graph).is_empty());
    graph.insert("queue".into(), ["jobs".into()].into());
    assert_eq!(cycles(&graph), vec![vec!["jobs", "queue", "worker"]]);
}
