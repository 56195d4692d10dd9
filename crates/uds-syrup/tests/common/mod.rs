//! Reading the project's vector files (`tests/vectors/*.tsv`).
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::PathBuf;

/// One row of a vector file.
pub struct Row {
    pub name: String,
    pub data: String,
    pub meaning: String,
}

/// The rows of `file`, comments skipped.
pub fn rows(file: &str) -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            Row {
                name: f.next().unwrap().to_owned(),
                data: f.next().unwrap_or("").to_owned(),
                meaning: f.next().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// `wire.tsv`, by name.
pub fn wire() -> HashMap<String, String> {
    rows("wire.tsv")
        .into_iter()
        .map(|r| (r.name, r.data))
        .collect()
}

/// Decodes hex.
pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}
