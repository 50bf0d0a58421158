//! Compiles every `schemas/**/*.json` (except `samples/` and `tools/`) into
//! the component as a sorted `(name, text)` table. The name of a schema is its
//! path under `schemas/` without `.json`.
use std::{env, fs, path::{Path, PathBuf}};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "samples" && name != "tools" {
                collect(root, &path, out);
            }
        } else if let Some(stem) = name.strip_suffix(".json") {
            let rel = path.parent().expect("file has a parent").strip_prefix(root).expect("under root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let key = if rel.is_empty() { stem.to_string() } else { format!("{rel}/{stem}") };
            out.push((key, path.canonicalize().expect("schema path")));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../../schemas").canonicalize().expect("schemas/ exists");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut found = Vec::new();
    collect(&root, &root, &mut found);
    found.sort();
    let mut code = String::from("/// Every schema compiled in: (name, JSON text), sorted by name.\npub const SCHEMAS: &[(&str, &str)] = &[\n");
    for (name, path) in &found {
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("schemas.rs"), code).expect("write schemas.rs");
}
