//! A real browser for the tests: Debian's Chromium, headless, driven
//! through ChromeDriver with fantoccini. `cargo xtask test` installs both
//! (and axe-core) and says where they are (`FLOWGATE_CHROMIUM`,
//! `FLOWGATE_CHROMEDRIVER`, `FLOWGATE_AXE_JS`); a browser that cannot be
//! started fails the test, saying what is missing — never a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// One browser at a time: each is a few hundred megabytes and this
/// machine has two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the package lives in the workspace")
        .to_owned()
}

fn tool(variable: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(default);
    assert!(
        path.is_file(),
        "{} is missing ({variable}). The console's browser tests need Chromium, ChromeDriver \
         and axe-core: run them with `cargo xtask test`, or `eval $(cargo xtask browser-tools)` \
         first, which installs what is missing",
        path.display()
    );
    path
}

/// Where the screenshots of the pages go: always under target/browser/,
/// and into docs/console/ too when `FLOWGATE_UPDATE_SCREENSHOTS=1`.
fn screenshot_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![workspace().join("target/browser/screenshots")];
    if std::env::var("FLOWGATE_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        dirs.push(workspace().join("docs/console"));
    }
    dirs
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A started browser.
pub struct Browser {
    pub client: Client,
    pub base: String,
    pub downloads: PathBuf,
    driver: Child,
    _profile: tempfile::TempDir,
    _downloads: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Start ChromeDriver and a headless Chromium pointed at `base`.
    pub async fn start(base: &str) -> Browser {
        let turn = ONE_AT_A_TIME.lock().await;
        let chromium = tool("FLOWGATE_CHROMIUM", "/usr/bin/chromium".into());
        let chromedriver = tool("FLOWGATE_CHROMEDRIVER", "/usr/bin/chromedriver".into());
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // Without the background-networking flags Chromium keeps
                // calling home, and this machine's closed network refuses
                // those connections slowly.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let attempt =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await;
            match attempt {
                Ok(client) => break client,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!(
                    "Chromium did not start through ChromeDriver ({} with {}): {error}",
                    chromedriver.display(),
                    chromium.display()
                ),
            }
        };
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            downloads: downloads.path().to_owned(),
            driver,
            _profile: profile,
            _downloads: downloads,
            _turn: turn,
        }
    }

    /// Open a console path.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}` on the page: {e}"))
    }

    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Type into a field (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Click the first element matching `css`. The element is found again
    /// when the page was replaced between finding and clicking it (after a
    /// form's submission, the old page's element may be found first).
    pub async fn click(&self, css: &str) {
        self.click_on(Locator::Css(css), css).await;
    }

    async fn click_on(&self, locator: Locator<'_>, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let element = self
                .client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(locator)
                .await
                .unwrap_or_else(|e| panic!("no element `{what}` on the page: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking `{what}`: {e}"),
            }
        }
    }

    /// Click the button (or link) whose text contains `text`.
    pub async fn press(&self, text: &str) {
        let xpath = format!(
            "//button[contains(normalize-space(.), {0})] | //a[contains(normalize-space(.), {0})]",
            xpath_literal(text)
        );
        self.click_on(Locator::XPath(&xpath), &format!("button or link {text}"))
            .await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.text_of("body").await
    }

    /// The visible text of the first element matching `css`, waiting for
    /// it to exist. Read by script: an element reference may go stale when
    /// the page is replaced under it.
    pub async fn text_of(&self, css: &str) -> String {
        self.text_of_when(css, |_| true).await
    }

    /// The visible text of the first element matching `css` once it
    /// satisfies `ready`, waiting up to 10 s (after a form's submission the
    /// old page may still be showing). The last text read, if it never
    /// does: the caller's assertion then says what was wrong.
    pub async fn text_of_when(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self
                .client
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                    vec![json!(css)],
                )
                .await;
            if let Ok(Value::String(text)) = text
                && (ready(&text) || Instant::now() >= deadline)
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no element `{css}` on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the form field matching `css`.
    pub async fn value_of(&self, css: &str) -> String {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.value : null;",
                vec![json!(css)],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_else(|| panic!("no field `{css}`"))
            .to_owned()
    }

    /// Wait until the page's text contains `expected`.
    pub async fn expect_text(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text().await;
            if text.contains(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page ({}) does not say {expected:?}; it says:\n{text}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run axe-core on the page: no serious or critical violation.
    pub async fn check_accessibility(&self, page: &str) {
        let grave = self.serious_violations(page).await;
        assert!(
            grave.is_empty(),
            "accessibility violations on {page}:\n{}",
            grave.join("\n")
        );
    }

    /// axe-core's serious and critical violations on the page, one line
    /// each: rule, impact, help and the first offending elements.
    pub async fn serious_violations(&self, page: &str) -> Vec<String> {
        let axe = tool(
            "FLOWGATE_AXE_JS",
            workspace().join("target/browser/node_modules/axe-core/axe.min.js"),
        );
        let source = std::fs::read_to_string(&axe).unwrap();
        // Injected through WebDriver, which the page's CSP does not govern:
        // the page itself allows no script but its own.
        self.client
            .execute(&format!("{source}\nreturn typeof axe;"), vec![])
            .await
            .unwrap();
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                    .then(r => done(JSON.stringify(r.violations)))
                    .catch(e => done(JSON.stringify({error: String(e)})));",
                vec![],
            )
            .await
            .unwrap();
        let violations: Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
        assert!(
            violations.get("error").is_none(),
            "axe failed on {page}: {violations}"
        );
        violations
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                let nodes: Vec<String> = v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .take(3)
                    .map(|n| {
                        n["html"]
                            .as_str()
                            .unwrap_or_default()
                            .chars()
                            .take(160)
                            .collect()
                    })
                    .collect();
                format!(
                    "{} ({}): {} — {}",
                    v["id"],
                    v["impact"],
                    v["help"],
                    nodes.join(" | ")
                )
            })
            .collect()
    }

    /// A screenshot of the whole page, named for the docs.
    pub async fn screenshot(&self, name: &str) {
        self.client
            .execute(
                "window.scrollTo(0, 0); document.activeElement.blur();",
                vec![],
            )
            .await
            .unwrap();
        let height = self
            .client
            .execute(
                "return Math.min(Math.max(document.documentElement.scrollHeight, 600), 2400);",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900);
        // The window's own width (a phone's stays a phone's), as tall as
        // the page.
        let previous = self.client.get_window_size().await.unwrap();
        self.client
            .set_window_size(previous.0 as u32, height as u32)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client
            .set_window_size(previous.0 as u32, previous.1 as u32)
            .await
            .unwrap();
        for dir in screenshot_dirs() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// A file the browser downloaded, once it is complete.
    pub async fn downloaded(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let files: Vec<PathBuf> = std::fs::read_dir(&self.downloads)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            // Chromium reserves the file's name with an empty placeholder
            // and writes into a `.crdownload` beside it, renamed over the
            // placeholder when complete.
            let writing = files
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "crdownload"));
            let done = files.into_iter().find(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
            });
            if let (false, Some(file)) = (writing, done) {
                return file;
            }
            assert!(
                Instant::now() < deadline,
                "the browser downloaded nothing into {}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A string as an XPath literal.
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else {
        format!("\"{text}\"")
    }
}

/// Whether a WebDriver command failed because its element belonged to a
/// page that has since been replaced.
fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(
        error,
        fantoccini::error::CmdError::Standard(e)
            if e.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}
