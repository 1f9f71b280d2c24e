//! Every command the README and `docs/` show a reader is checked against
//! what it names: a `flowgate …` command is given to the real binary (with
//! `--help` appended, so clap refuses an unknown subcommand or flag before
//! printing help, and nothing is run); a `curl` against the API must name a
//! path and method of the service's OpenAPI document; a `cargo xtask`,
//! `cargo test --test` or `--bench` must name a task, test target or
//! benchmark that exists. A doc that drifts from the code fails here, not
//! in front of a new operator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use flowgate_testkit::service::TestService;
use regex_lite::Regex;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The documents a reader follows: the README and every page in `docs/`.
fn documents() -> Vec<(String, String)> {
    let root = workspace();
    let mut paths = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// A command as the reader sees it, and where.
struct Shown {
    at: String,
    words: Vec<String>,
}

/// Commands in fenced blocks (continuation lines joined, a `$ ` prompt
/// dropped, output lines ignored) and in inline code spans.
fn commands(name: &str, text: &str) -> Vec<Shown> {
    let fence = Regex::new(r"(?s)```[^\n]*\n(.*?)```").unwrap();
    let mut shown = Vec::new();
    let mut prose = text.to_owned();
    for block in fence.captures_iter(text) {
        let body = &block[1];
        let first_line = text[..block.get(0).unwrap().start()].lines().count() + 2;
        let mut joined = String::new();
        let mut start = first_line;
        for (i, line) in body.lines().enumerate() {
            if joined.is_empty() {
                start = first_line + i;
            }
            match line.trim_end().strip_suffix('\\') {
                Some(part) => {
                    joined.push_str(part);
                    joined.push(' ');
                }
                None => {
                    joined.push_str(line);
                    shown.extend(command(&format!("{name}:{start}"), &joined));
                    joined.clear();
                }
            }
        }
        prose = prose.replace(&block[0], "");
    }
    let span = Regex::new(r"`([^`]+)`").unwrap();
    for inline in span.captures_iter(&prose) {
        let words = inline[1].split_whitespace().collect::<Vec<_>>().join(" ");
        if words.starts_with("flowgate ") || words.starts_with("cargo ") {
            shown.extend(command(&format!("{name} (inline)"), &words));
        }
    }
    shown
}

/// One shell line as words, cut at a pipe, redirection, `&`, `&&` or comment,
/// with optional groups opened (`[--days N]` checks `--days`) and generic
/// placeholders (`[options]`) dropped.
fn command(at: &str, line: &str) -> Option<Shown> {
    let line = line.trim_start().trim_start_matches("$ ");
    let words = shlex::split(line)?;
    let mut kept = Vec::new();
    for word in words {
        if ["|", ">", "<", "&", "&&", ";", "2>&1"].contains(&word.as_str()) || word.starts_with('#')
        {
            break;
        }
        if word.eq_ignore_ascii_case("[options]") {
            continue;
        }
        let word = word
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !word.is_empty() {
            kept.push(word);
        }
    }
    let program = kept.first()?.as_str();
    matches!(program, "flowgate" | "curl" | "cargo").then(|| Shown {
        at: at.to_owned(),
        words: kept,
    })
}

/// A word standing for what the reader fills in: `…`, `<tenant>`.
fn placeholder(word: &str) -> bool {
    word == "…" || word.starts_with('<')
}

fn all_commands() -> Vec<Shown> {
    documents()
        .iter()
        .flat_map(|(name, text)| commands(name, text))
        .collect()
}

#[test]
fn every_flowgate_command_in_the_docs_names_a_real_subcommand_and_real_flags() {
    let binary = env!("CARGO_BIN_EXE_flowgate");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for shown in all_commands() {
        // `flowgate …` in prose names the command, not a subcommand.
        if shown.words[0] != "flowgate" || shown.words.len() < 2 || placeholder(&shown.words[1]) {
            continue;
        }
        let output = Command::new(binary)
            .args(&shown.words[1..])
            .arg("--help")
            .output()
            .unwrap();
        checked += 1;
        if !output.status.success() {
            wrong.push(format!(
                "{}: `{}`: {}",
                shown.at,
                shown.words.join(" "),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    assert!(
        checked >= 15,
        "only {checked} flowgate commands found in the docs"
    );
    assert!(
        wrong.is_empty(),
        "commands in the docs that the binary refuses:\n{}",
        wrong.join("\n")
    );
}

/// The path of an API URL as the docs write it (`$FLOWGATE/v1/dsr/access`,
/// `"$FG/v1/audit?action=plugin."`): the part from the first `/` after the
/// host variable, without the query.
fn api_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix('$')?;
    let rest = rest.trim_start_matches(|c: char| {
        c.is_ascii_alphanumeric() || c == '_' || c == '{' || c == '}'
    });
    let path = rest.split('?').next()?;
    path.starts_with('/').then(|| path.to_owned())
}

/// Whether a documented path (with `$ID`-style or `…` segments) matches a
/// template of the OpenAPI document (with `{id}` segments).
fn matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| {
            t == p
                || (t.starts_with('{') && (p.starts_with('$') || p.starts_with('<') || *p == "…"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_in_the_docs_names_a_path_and_method_the_service_serves() {
    let service = TestService::start().await;
    let spec: Value = service
        .http
        .get(format!("{}/openapi.json", service.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    service.stop().await;
    let operations: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();

    let mut checked = 0;
    let mut wrong = Vec::new();
    for shown in all_commands() {
        if shown.words[0] != "curl" {
            continue;
        }
        let Some(path) = shown.words.iter().find_map(|w| api_path(w)) else {
            continue;
        };
        let explicit = shown
            .words
            .windows(2)
            .find(|pair| pair[0] == "-X" || pair[0] == "--request")
            .map(|pair| pair[1].to_uppercase());
        let has_body = shown
            .words
            .iter()
            .any(|w| w == "-d" || w.starts_with("--data"));
        let method = explicit.unwrap_or_else(|| if has_body { "POST" } else { "GET" }.to_owned());
        checked += 1;
        let served = operations
            .iter()
            .any(|(m, template)| *m == method && matches(template, &path));
        if !served {
            wrong.push(format!("{}: {method} {path}", shown.at));
        }
    }
    assert!(checked >= 20, "only {checked} API calls found in the docs");
    assert!(
        wrong.is_empty(),
        "API calls in the docs that the OpenAPI document does not list:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_cargo_command_in_the_docs_names_a_real_task_target_or_benchmark() {
    let root = workspace();
    let xtask = std::fs::read_to_string(root.join("xtask/src/main.rs")).unwrap();
    let manifests = [
        std::fs::read_to_string(root.join("cli/Cargo.toml")).unwrap(),
        std::fs::read_to_string(root.join("host/Cargo.toml")).unwrap(),
    ]
    .concat();
    let mut wrong = Vec::new();
    for shown in all_commands() {
        let words: Vec<&str> = shown.words.iter().map(String::as_str).collect();
        if words.first() != Some(&"cargo") {
            continue;
        }
        if words.get(1) == Some(&"xtask")
            && let Some(task) = words.get(2).filter(|t| !t.starts_with('-'))
        {
            // clap names a variant `BuildGuests` `build-guests`.
            let variant: String = task
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
                })
                .collect();
            let declared = Regex::new(&format!(r"(?m)^\s*{variant}\b")).unwrap();
            if !declared.is_match(&xtask) {
                wrong.push(format!("{}: no xtask task `{task}`", shown.at));
            }
        }
        for pair in words.windows(2) {
            if (pair[0] == "--test" || pair[0] == "--bench")
                && !pair[1].starts_with('-')
                && !placeholder(pair[1])
                && !manifests.contains(&format!("name = \"{}\"", pair[1]))
            {
                wrong.push(format!("{}: no target `{} {}`", shown.at, pair[0], pair[1]));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cargo commands in the docs that name nothing:\n{}",
        wrong.join("\n")
    );
}
