//! What a user meets first on a fresh clone: every example binary's `--help` opens
//! with its own description, and the README's commands and lists hold — commands
//! written so they run, the benchmark's time claim saying what it covers, the
//! Layout and Examples sections naming every example binary.

use std::process::Command;

const README: &str = include_str!("../../README.md");

/// The text of the README section under `## {title}`.
fn section(title: &str) -> &'static str {
    let start = README.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("no section {title:?}"));
    let body = &README[start + title.len() + 5..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

const BINARIES: [(&str, &str); 7] = [
    ("phttpd", env!("CARGO_BIN_EXE_phttpd")),
    ("echo", env!("CARGO_BIN_EXE_echo")),
    ("kv", env!("CARGO_BIN_EXE_kv")),
    ("wal", env!("CARGO_BIN_EXE_wal")),
    ("hyper", env!("CARGO_BIN_EXE_hyper")),
    ("lines", env!("CARGO_BIN_EXE_lines")),
    ("lines_tokio", env!("CARGO_BIN_EXE_lines_tokio")),
];

#[test]
fn every_binarys_help_opens_with_its_own_description() {
    for (name, path) in BINARIES {
        let out = Command::new(path).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help: {}", out.status);
        let help = String::from_utf8(out.stdout).unwrap();
        let first = help.lines().next().unwrap_or("");
        assert_ne!(first, env!("CARGO_PKG_DESCRIPTION"), "{name} --help opens with the crate's description");
        assert!(!first.starts_with("Usage:"), "{name} --help has no description");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wal")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.starts_with("wal, a write-ahead log over HTTP"), "{help}");
}

#[test]
fn readme_commands_run_as_written() {
    assert!(!README.contains("`paste-bench "), "a `paste-bench ...` command is not runnable as written");
    let bench_main = include_str!("../../benches/src/main.rs");
    let marker = "cargo run --release -p paste-rt-bench -- ";
    let mut found = 0;
    for (at, _) in README.match_indices(marker) {
        let sub: String = README[at + marker.len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let variant = format!("{}{}(", sub[..1].to_uppercase(), &sub[1..]);
        assert!(
            bench_main.contains(&variant),
            "paste-bench has no `{sub}` subcommand ({variant} in benches/src/main.rs)"
        );
        found += 1;
    }
    assert!(found >= 3, "the README's ab and callgrind commands");
    assert!(README.contains("`cargo run --release -p paste-rt-bench -- callgrind`"));
}

#[test]
fn the_benchmarks_time_claim_says_whether_it_includes_compiling() {
    let benchmark = section("The A/B benchmark (the main job)");
    let claim = benchmark.find("3 minutes").expect("the time claim");
    let sentence = &benchmark[benchmark[..claim].rfind(". ").map_or(0, |i| i + 2)..];
    let sentence = &sentence[..sentence.find(". ").unwrap_or(sentence.len())];
    assert!(sentence.contains("build"), "the claim must say how compiling counts: {sentence:?}");
}

#[test]
fn layout_and_examples_name_every_example_binary() {
    let (layout, examples) = (section("Layout"), section("Examples"));
    for (name, _) in BINARIES {
        let stem = name.trim_end_matches("_tokio");
        assert!(layout.contains(stem), "the Layout section does not name {name}");
        assert!(examples.contains(&format!("`{name}`")), "the Examples section does not list `{name}`");
    }
}

/// GitHub's anchor for a Markdown heading: lower case, letters, digits, `-` and `_`
/// kept, spaces turned into `-`, everything else dropped.
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The Markdown files a user reads: the README and everything under `docs/`.
fn markdown_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
}

/// The targets of a Markdown text's inline links and images (`[text](target)`),
/// outside fenced code blocks.
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(&after[..end]);
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let files = markdown_files(root);
    assert!(files.len() > 5, "the README and docs/ hold more Markdown files than {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            if anchor.is_empty() || linked.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let headings = std::fs::read_to_string(&linked).unwrap();
            let found = headings
                .lines()
                .filter_map(|l| l.strip_prefix('#').map(|h| h.trim_start_matches('#')))
                .any(|h| heading_anchor(h) == anchor);
            if !found {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
