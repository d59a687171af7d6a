//! Which writer components a backup includes.
//!
//! **Default selection** (VShadow's, vss-model.md §10.2): a component is *directly excluded*
//! when one of its files (file group paths, database and log files) lies outside every volume
//! of the set; exclusion spreads to its ancestors. Then every selectable component that is not
//! excluded and has no included ancestor is included, and so is every top-level non-selectable
//! component that is not excluded. "Lies on a volume" compares paths: a file path is on volume
//! `V` when it is `V` or below it (both canonicalized when they exist).
//!
//! **`--component WRITER[:PATH]`** narrows the selection: `WRITER` is a writer name, writer id
//! or instance id (braces allowed) and matches every instance it names; `PATH` is
//! `LOGICALPATH\NAME` (a leading `\` is allowed; `/` works as separator when no component has
//! the path with `\`), or empty for the writer's default selection. A named component is
//! included even when its files are not on the given volumes (vssd then fails the writer with
//! VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT); a non-selectable component below a selectable one
//! cannot be named (include its selectable ancestor).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Value, json};
use uuid::Uuid;
use vss_client::{ComponentType, WriterMetadata};
use vss_model::wmd::WmdComponent;

use crate::exit::CliError;

/// One component to include (AddComponent's arguments and the writer's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The writer's name.
    pub writer_name: String,
    /// Writer instance id.
    pub instance_id: Uuid,
    /// Writer class id.
    pub writer_id: Uuid,
    /// Component type.
    pub component_type: ComponentType,
    /// Logical path ("" at the root).
    pub logical_path: String,
    /// Component name.
    pub name: String,
}

impl Selected {
    fn of(w: &WriterMetadata, c: &WmdComponent) -> Self {
        Selected {
            writer_name: w.writer_name.clone(),
            instance_id: w.instance_id,
            writer_id: w.writer_id,
            component_type: c.component_type,
            logical_path: c.logical_path.clone(),
            name: c.name.clone(),
        }
    }

    /// `LOGICALPATH\NAME`, or `NAME` at the root.
    pub fn full_path(&self) -> String {
        join(&self.logical_path, &self.name)
    }

    /// As JSON, for `--json` output.
    pub fn to_json(&self) -> Value {
        json!({
            "writerName": self.writer_name,
            "writerId": self.writer_id.to_string(),
            "instanceId": self.instance_id.to_string(),
            "componentType": self.component_type.name(),
            "logicalPath": self.logical_path,
            "name": self.name,
        })
    }
}

/// `--component WRITER[:PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Writer name, writer id or instance id.
    pub writer: String,
    /// `LOGICALPATH\NAME` without a leading backslash; `None` for the whole writer.
    pub path: Option<String>,
}

impl FromStr for ComponentSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (writer, path) = match s.split_once(':') {
            Some((w, p)) => (w, Some(p)),
            None => (s, None),
        };
        let writer = writer.trim();
        if writer.is_empty() {
            return Err(format!(
                "'{s}' names no writer; use WRITER:LOGICALPATH\\NAME (WRITER = name, writer id or instance id)"
            ));
        }
        let path = path
            .map(|p| p.trim_start_matches('\\').to_owned())
            .filter(|p| !p.is_empty());
        Ok(ComponentSpec {
            writer: writer.to_owned(),
            path,
        })
    }
}

fn join(logical_path: &str, name: &str) -> String {
    vss_model::wmd::full_path(logical_path, name)
}

/// Whether `a` is an ancestor of `c` (both of one writer).
fn is_ancestor(a: &WmdComponent, c: &WmdComponent) -> bool {
    let ap = join(&a.logical_path, &a.name);
    c.logical_path == ap || c.logical_path.starts_with(&format!("{ap}\\"))
}

/// Canonicalizes a path if it exists, else keeps it as given.
pub fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// Whether every file of `c` lies on one of `volumes`.
fn on_volumes(c: &WmdComponent, volumes: &[PathBuf]) -> bool {
    c.all_files().all(|f| {
        let p = canonical(Path::new(&f.path));
        volumes.iter().any(|v| p.starts_with(v))
    })
}

/// The default selection of one writer (see the module documentation).
fn writer_default(w: &WriterMetadata, volumes: &[PathBuf]) -> Vec<Selected> {
    let comps = &w.components;
    let excluded: Vec<bool> = comps
        .iter()
        .map(|a| {
            // Excluded directly, or an ancestor of a directly excluded component.
            comps
                .iter()
                .any(|c| (std::ptr::eq(a, c) || is_ancestor(a, c)) && !on_volumes(c, volumes))
        })
        .collect();
    // Decide ancestors first: fewer logical path segments first.
    let mut order: Vec<usize> = (0..comps.len()).collect();
    order.sort_by_key(|&i| {
        let lp = &comps[i].logical_path;
        if lp.is_empty() {
            0
        } else {
            lp.split('\\').count()
        }
    });
    let mut included = vec![false; comps.len()];
    for i in order {
        if excluded[i] {
            continue;
        }
        let c = &comps[i];
        let top = c.logical_path.is_empty();
        let has_included_ancestor = comps
            .iter()
            .enumerate()
            .any(|(j, a)| included[j] && j != i && is_ancestor(a, c));
        if (c.selectable && !has_included_ancestor) || (!c.selectable && top) {
            included[i] = true;
        }
    }
    comps
        .iter()
        .zip(included)
        .filter(|(_, inc)| *inc)
        .map(|(c, _)| Selected::of(w, c))
        .collect()
}

/// VShadow's default selection over every writer, for a set of `volumes` (canonical paths).
pub fn default_selection(writers: &[WriterMetadata], volumes: &[PathBuf]) -> Vec<Selected> {
    writers
        .iter()
        .flat_map(|w| writer_default(w, volumes))
        .collect()
}

fn strip_braces(s: &str) -> &str {
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s)
}

/// Whether `spec` names writer `w` (by name, writer id or instance id).
fn names_writer(spec: &str, w: &WriterMetadata) -> bool {
    if w.writer_name == spec {
        return true;
    }
    match Uuid::parse_str(strip_braces(spec)) {
        Ok(id) => id == w.writer_id || id == w.instance_id,
        Err(_) => false,
    }
}

/// The selection narrowed to `specs`; an unknown writer or component is an error (exit 3), a
/// component that cannot be selected on its own a usage error (exit 2).
pub fn explicit_selection(
    writers: &[WriterMetadata],
    specs: &[ComponentSpec],
    volumes: &[PathBuf],
) -> Result<Vec<Selected>, CliError> {
    let mut out: Vec<Selected> = Vec::new();
    let mut push = |s: Selected| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for spec in specs {
        let matched: Vec<&WriterMetadata> = writers
            .iter()
            .filter(|w| names_writer(&spec.writer, w))
            .collect();
        if matched.is_empty() {
            let known: Vec<&str> = writers.iter().map(|w| w.writer_name.as_str()).collect();
            return Err(CliError::not_found(format!(
                "no writer '{}' answered (writers: {})",
                spec.writer,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        for w in matched {
            let Some(path) = &spec.path else {
                for s in writer_default(w, volumes) {
                    push(s);
                }
                continue;
            };
            let find = |p: &str| {
                w.components
                    .iter()
                    .find(|c| join(&c.logical_path, &c.name) == p)
            };
            let c = find(path)
                .or_else(|| find(&path.replace('/', "\\")))
                .ok_or_else(|| {
                    CliError::not_found(format!(
                        "writer '{}' has no component '{path}' (components: {})",
                        w.writer_name,
                        w.components
                            .iter()
                            .map(|c| join(&c.logical_path, &c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if let Some(a) = w
                .components
                .iter()
                .find(|a| !c.selectable && a.selectable && is_ancestor(a, c))
            {
                return Err(CliError::usage(format!(
                    "component '{path}' of writer '{}' is not selectable; include its selectable ancestor '{}'",
                    w.writer_name,
                    join(&a.logical_path, &a.name)
                )));
            }
            if !on_volumes(c, volumes) {
                crate::output::note(format!(
                    "component '{path}' of writer '{}' has files outside the given volumes; the writer will report an inconsistent snapshot",
                    w.writer_name
                ));
            }
            push(Selected::of(w, c));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(lp: &str, name: &str, selectable: bool, files: &[&str]) -> serde_json::Value {
        let files: Vec<_> = files
            .iter()
            .map(|p| json!({"path": p, "filespec": "*", "recursive": true}))
            .collect();
        json!({
            "componentType": "VSS_CT_FILEGROUP",
            "logicalPath": lp,
            "name": name,
            "selectable": selectable,
            "files": files,
        })
    }

    fn writer(name: &str, components: Vec<serde_json::Value>) -> WriterMetadata {
        serde_json::from_value(json!({
            "writerId": Uuid::new_v4().to_string(),
            "instanceId": Uuid::new_v4().to_string(),
            "writerName": name,
            "usageType": "VSS_UT_USERDATA",
            "sourceType": "VSS_ST_OTHER",
            "applicationLevel": "VSS_APP_FRONT_END",
            "restoreMethod": "VSS_RME_RESTORE_IF_CAN_REPLACE",
            "writerRestore": "VSS_WRE_NEVER",
            "components": components,
        }))
        .expect("writer metadata")
    }

    fn names(s: &[Selected]) -> Vec<String> {
        s.iter()
            .map(|s| format!("{}:{}", s.writer_name, s.full_path()))
            .collect()
    }

    const VOL: &str = "/nonexistent-vss-test/vol";

    #[test]
    fn vshadow_default_selection() {
        let w = writer(
            "db",
            vec![
                comp("", "root", true, &[]),
                comp("root", "child", true, &[&format!("{VOL}/a")]),
                comp("", "fixed", false, &[&format!("{VOL}/b")]),
                comp("fixed", "sub", true, &[&format!("{VOL}/c")]),
                comp("", "elsewhere", true, &["/nonexistent-vss-test/other/d"]),
                comp("", "mixed", true, &[]),
                comp("mixed", "in", true, &[&format!("{VOL}/e")]),
                comp("mixed", "out", true, &["/nonexistent-vss-test/other/f"]),
            ],
        );
        let s = default_selection(&[w], &[PathBuf::from(VOL)]);
        // root (selectable, no ancestor) covers child; fixed is top-level non-selectable and
        // covers sub; elsewhere is excluded; mixed is excluded through "out", so "in" is
        // included on its own.
        assert_eq!(names(&s), ["db:root", "db:fixed", "db:mixed\\in"]);
    }

    #[test]
    fn a_volume_is_its_path_and_below() {
        let w = writer(
            "w",
            vec![
                comp("", "exact", true, &[VOL]),
                comp("", "prefix-only", true, &[&format!("{VOL}2/x")]),
            ],
        );
        let s = default_selection(&[w], &[PathBuf::from(VOL)]);
        assert_eq!(names(&s), ["w:exact"]);
    }

    #[test]
    fn specs_parse() {
        let s: ComponentSpec = "db:\\logs\\today".parse().unwrap();
        assert_eq!(s.writer, "db");
        assert_eq!(s.path.as_deref(), Some("logs\\today"));
        let s: ComponentSpec = "db".parse().unwrap();
        assert_eq!(s.path, None);
        let s: ComponentSpec = "db:".parse().unwrap();
        assert_eq!(s.path, None);
        assert!(":x".parse::<ComponentSpec>().is_err());
    }

    #[test]
    fn explicit_selection_narrows() {
        let a = writer(
            "a",
            vec![
                comp("", "one", true, &[&format!("{VOL}/1")]),
                comp("", "two", true, &[&format!("{VOL}/2")]),
                comp("two", "fixedsub", false, &[&format!("{VOL}/3")]),
            ],
        );
        let b = writer("b", vec![comp("", "x", true, &[&format!("{VOL}/x")])]);
        let vols = [PathBuf::from(VOL)];
        let ws = [a.clone(), b.clone()];
        let spec = |s: &str| s.parse::<ComponentSpec>().unwrap();
        let s = explicit_selection(&ws, &[spec("a:two")], &vols).unwrap();
        assert_eq!(names(&s), ["a:two"]);
        let s = explicit_selection(&ws, &[spec(&format!("{{{}}}", b.instance_id))], &vols).unwrap();
        assert_eq!(names(&s), ["b:x"]);
        let s = explicit_selection(&ws, &[spec(&b.writer_id.to_string())], &vols).unwrap();
        assert_eq!(names(&s), ["b:x"]);
        let e = explicit_selection(&ws, &[spec("nope")], &vols).unwrap_err();
        assert_eq!(e.exit, crate::exit::NOT_FOUND);
        let e = explicit_selection(&ws, &[spec("a:three")], &vols).unwrap_err();
        assert_eq!(e.exit, crate::exit::NOT_FOUND);
        let e = explicit_selection(&ws, &[spec("a:two\\fixedsub")], &vols).unwrap_err();
        assert_eq!(e.exit, crate::exit::USAGE);
        let s = explicit_selection(&ws, &[spec("a:two/fixedsub"), spec("a")], &vols);
        assert!(s.is_err(), "slash form finds the same component");
        let s = explicit_selection(&ws, &[spec("a"), spec("a:one")], &vols).unwrap();
        assert_eq!(names(&s), ["a:one", "a:two"], "no duplicates");
    }
}
