//! The crate's layers, checked from its source: every top-level module of `src/` belongs to
//! one layer (foundations, runtime, services, apps; see `ARCHITECTURE.md`), imports only its
//! own layer and those below, and no module imports a module that imports it back (the
//! top-level import graph has no cycle).
//!
//! Reads `src/**/*.rs` as text: every `crate::m` path (including `use crate::{a, b::c}`
//! groups and `super::` paths that climb to the crate root), comments aside. A text reader
//! is enough for this crate's style (no `#[path]`, no macros that name modules) and needs no
//! tool that CI would have to install.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first, and the top-level modules of each.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "config",
            "http",
            "models",
            "client",
            "endpoint",
            "l2",
            "snapshot",
            "wallclock",
            "oneshot",
            "notify",
            "logging",
            "status",
            "openapi",
        ],
    ),
    ("runtime", &["mesh", "runtime"]),
    (
        "services",
        &[
            "ai",
            "auth",
            "ratelimit",
            "metrics",
            "monitor",
            "modelserver",
        ],
    ),
    ("apps", &["app", "cli", "tune", "fuzz"]),
];

/// Names that are re-exports at the crate root, by the module that defines them.
const ALIASES: &[(&str, &str)] = &[("error", "http")];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line, doc and block comments) and with every string literal
/// emptied (plain, byte and raw strings), so that neither a `//` nor a `crate::` inside a
/// string counts.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            (b'r', Some(b'"' | b'#'))
                if i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
                    || (bytes[i - 1] == b'b'
                        && (i < 2
                            || !(bytes[i - 2].is_ascii_alphanumeric()
                                || bytes[i - 2] == b'_'))) =>
            {
                // A raw string, r"..." or r#"..."#: its end is a quote and as many hashes.
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let end = text[open + 1..]
                    .find(&close)
                    .map_or(bytes.len(), |k| open + 1 + k + close.len());
                out.push_str("\"\"");
                i = end;
            }
            (b'"', _) => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'\'', _) => {
                // A char literal ('x', '\n', '"', '{') or a lifetime ('a): a char literal
                // becomes 'c', so that neither a quote nor a brace inside it counts.
                let rest = &text[i..];
                let len = if let Some(escaped) = rest.strip_prefix("'\\") {
                    escaped.find('\'').map(|k| k + 3)
                } else {
                    rest.char_indices()
                        .nth(2)
                        .filter(|&(_, c)| c == '\'')
                        .map(|(k, _)| k + 1)
                };
                match len {
                    Some(len) => {
                        out.push_str("'c'");
                        i += len;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let c = text[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn ident_at(text: &str) -> &str {
    if text.starts_with('*') {
        return "*";
    }
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segment of each item of a `{...}` group that starts at `text[0] == '{'`.
fn group_heads(text: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (k, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                item_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 1 => {
                heads.push(ident_at(&text[k..]));
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The crate-root module names `code` refers to, for a file whose module path below the
/// crate root is `depth` deep (`src/a.rs` and `src/a/mod.rs`: 1; `src/a/b.rs`: 2).
fn referenced(code: &str, depth: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(k) = rest.find("crate::") {
        let before = rest[..k].chars().next_back();
        let after = &rest[k + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if after.starts_with('{') {
            names.extend(group_heads(after).into_iter().map(str::to_string));
        } else {
            names.insert(ident_at(after).to_string());
        }
    }
    // `super::` chains long enough to reach the crate root; inside an inline `mod m { .. }`
    // (a file's `mod tests`) each enclosing module adds one level to climb.
    let nesting = inline_mod_nesting(code);
    let mut from = 0;
    while let Some(k) = code[from..].find("super::").map(|k| k + from) {
        let before = code[..k].chars().next_back();
        let mut after = &code[k..];
        from = k + "super::".len();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut climbs = 0;
        while let Some(tail) = after.strip_prefix("super::") {
            climbs += 1;
            after = tail;
        }
        if climbs >= depth + nesting[k] {
            if after.starts_with('{') {
                names.extend(group_heads(after).into_iter().map(str::to_string));
            } else {
                names.insert(ident_at(after).to_string());
            }
        }
    }
    names
}

/// For each byte of `code` (comments and strings stripped), how many inline modules
/// (`mod name { .. }`) enclose it.
fn inline_mod_nesting(code: &str) -> Vec<usize> {
    let bytes = code.as_bytes();
    let mut nesting = vec![0; bytes.len() + 1];
    let (mut level, mut mods) = (0usize, Vec::<usize>::new());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => {
                level += 1;
                // `mod <ident> {`: the words before the brace.
                let head = code[..i].trim_end();
                let word = head
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("");
                let before = head[..head.len() - word.len()].trim_end();
                if !word.is_empty()
                    && before.ends_with("mod")
                    && !before[..before.len() - 3]
                        .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                {
                    mods.push(level);
                }
            }
            b'}' => {
                if mods.last() == Some(&level) {
                    mods.pop();
                }
                level = level.saturating_sub(1);
            }
            _ => {}
        }
        nesting[i] = mods.len();
    }
    nesting
}

/// The top-level modules of `src/` and, for each, the top-level modules it imports, with the
/// files that import them. A glob from the crate root (`crate::*`, or `super::*` climbing to
/// it) hides what a file imports, so it is recorded under the name `*`.
fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let name = first.trim_end_matches(".rs").to_string();
        if name != "lib" && name != "main" {
            modules.insert(name);
        }
    }
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        let from = parts[0].trim_end_matches(".rs").to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        let last = parts.last().unwrap();
        let depth = parts.len() - usize::from(last == "mod.rs");
        let code = strip_comments(&std::fs::read_to_string(f).unwrap());
        for name in referenced(&code, depth) {
            let to = ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map_or(name.clone(), |(_, m)| m.to_string());
            if to != from && (modules.contains(&to) || to == "*") {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
        graph.entry(from).or_default();
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_file_hides_its_imports() {
    let graph = module_graph();
    let hidden: Vec<String> = graph
        .iter()
        .filter_map(|(from, edges)| edges.get("*").map(|files| format!("{from}: {files:?}")))
        .collect();
    assert!(
        hidden.is_empty(),
        "glob imports from the crate root (name what is imported): {hidden:?}"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["lib.rs", "main.rs"] {
        let code = strip_comments(&std::fs::read_to_string(src.join(file)).unwrap());
        assert!(
            !code.contains("$crate::"),
            "{file}: a macro path this reader skips"
        );
    }
    let lib = strip_comments(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    for line in lib.lines().map(str::trim) {
        let Some(path) = line
            .strip_prefix("pub use ")
            .and_then(|l| l.strip_suffix(';'))
        else {
            continue;
        };
        let module = ident_at(path);
        let name = path.rsplit("::").next().unwrap();
        assert!(
            ALIASES.contains(&(name, module)),
            "lib.rs re-exports `{path}`: add (\"{name}\", \"{module}\") to ALIASES so that \
             `crate::{name}` counts as an import of `{module}`"
        );
    }
}

#[test]
fn every_module_has_a_layer() {
    let graph = module_graph();
    let unplaced: Vec<&String> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules with no layer: {unplaced:?}; add each to LAYERS here and to the \
         table in ARCHITECTURE.md"
    );
    for (_, modules) in LAYERS {
        for m in *modules {
            assert!(
                graph.contains_key(*m),
                "LAYERS names `{m}`, which is not a module of src/"
            );
        }
    }
}

#[test]
fn no_layer_imports_one_above_it() {
    let graph = module_graph();
    let mut upward = Vec::new();
    for (from, edges) in &graph {
        for (to, files) in edges {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) {
                if b > a {
                    upward.push(format!(
                        "{from} ({}) imports {to} ({}) in {files:?}",
                        LAYERS[a].0, LAYERS[b].0
                    ));
                }
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph();
    let found = cycles(&graph);
    let explained: Vec<String> = found
        .iter()
        .map(|component| {
            let mut lines = vec![format!("cycle among {component:?}:")];
            for from in component {
                for (to, files) in &graph[from] {
                    if component.contains(to) {
                        lines.push(format!("  {from} -> {to} in {files:?}"));
                    }
                }
            }
            lines.join("\n")
        })
        .collect();
    assert!(found.is_empty(), "{}", explained.join("\n"));
}

#[test]
fn the_reader_finds_the_imports_it_must() {
    let code = strip_comments(
        "use crate::{a::{b, c}, d as e, f};\n\
         // use crate::commented;\n\
         /* crate::blocked */ let s = \"// not a comment\"; crate::g::h();\n\
         let c = '\"'; crate::after_char::x();\n\
         let r = r#\"a \" // crate::in_raw\"#; crate::after_raw::x();\n\
         use crate::*;\n\
         fn k<'a>(x: &'a str) { super::super::up::y(); super::near::z(); }\n\
         my_crate::not_ours::q();",
    );
    let names: Vec<String> = referenced(&code, 2).into_iter().collect();
    assert_eq!(
        names,
        ["*", "a", "after_char", "after_raw", "d", "f", "g", "up"]
    );
    let shallow: Vec<String> = referenced("super::root_level::x();", 1)
        .into_iter()
        .collect();
    assert_eq!(shallow, ["root_level"]);
    // In a file's `mod tests { .. }`, `super::` is the file's module, not the crate root.
    let code = strip_comments(
        "mod tests { use super::*; let b = '{'; super::super::sibling::x(); }\n\
         super::top::y();",
    );
    let nested: Vec<String> = referenced(&code, 1).into_iter().collect();
    assert_eq!(nested, ["sibling", "top"]);
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let edge = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default();
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(cycles(&edge(&[("a", "b"), ("b", "c")])).is_empty());
    assert_eq!(
        cycles(&edge(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]
    );
}
