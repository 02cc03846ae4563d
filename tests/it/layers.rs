//! The layers of ARCHITECTURE.md, enforced: every `crate::…` a module of
//! `src/` uses (outside its tests and comments) is in its own layer or a
//! lower one, no two top-level modules use each other, and every module
//! has a layer (a new one must be placed, here and in ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first; a module may use its own layer and those before it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "time",
            "decimal",
            "net",
            "owned",
            "lifecycle",
            "smtp",
            "message",
            "spf",
            "milter",
            "memory",
            "lines",
        ],
    ),
    (
        "configuration",
        &["config", "verdict", "log", "peers", "reload", "lists"],
    ),
    ("infrastructure", &["spool", "state", "dns", "tls"]),
    ("policy", &["abuse", "recipients", "policy"]),
    ("services", &["delivery", "services"]),
    (
        "front ends",
        &["session", "policy_server", "dry_run", "metrics"],
    ),
    ("serving", &["listeners", "reconfigure", "control"]),
    (
        "commands",
        &[
            "server",
            "queue_admin",
            "ban_admin",
            "greylist_admin",
            "report",
            "import",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The code of a file without its tests and its comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each top-level module of `src/` and the modules it uses.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let pattern = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "main" || top == "lib" {
                continue;
            }
            let text = code(&std::fs::read_to_string(&path).unwrap());
            let used = graph.entry(top.clone()).or_default();
            for found in pattern.captures_iter(&text) {
                if found[1] != top {
                    used.insert(found[1].to_string());
                }
            }
        }
    }
    graph
}

#[test]
fn every_module_uses_only_its_own_layer_and_those_below() {
    let graph = uses();
    let mut wrong = Vec::new();
    for (module, used) in &graph {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!(
                "{module} has no layer (tests/it/layers.rs, ARCHITECTURE.md)"
            ));
            continue;
        };
        for other in used {
            match layer_of(other) {
                Some(theirs) if theirs <= mine => {}
                Some(theirs) => wrong.push(format!(
                    "{module} ({}) uses {other} ({}), a layer above",
                    LAYERS[mine].0, LAYERS[theirs].0
                )),
                None => wrong.push(format!("{module} uses {other}, which has no layer")),
            }
            if graph.get(other).is_some_and(|back| back.contains(module)) {
                wrong.push(format!("{module} and {other} use each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(graph.len() > 20, "the walk found the modules: {graph:?}");
}

#[test]
fn the_smtp_layer_knows_nothing_of_policy_state_dns_or_config() {
    let graph = uses();
    let used = &graph["smtp"];
    for forbidden in ["policy", "state", "dns", "config", "session", "services"] {
        assert!(!used.contains(forbidden), "smtp uses {forbidden}: {used:?}");
    }
}
