//! A headless Chromium driven over WebDriver, for the web console's tests: Debian's
//! `chromium` and `chromium-driver` (never a downloaded browser), `chromedriver` started
//! on a free port and spoken to with the W3C WebDriver protocol (JSON over HTTP) through
//! the raw client of [`crate::http`]. Only what the tests need: open a page, find,
//! click and type, run a script, read the browser's log, take a screenshot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::http;
use crate::paths;
use crate::poll;
use crate::process::Process;

/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser and its driver are installed (`make test` installs them).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A chromedriver and one browser session, both ended on drop.
pub struct Browser {
    driver: SocketAddr,
    session: String,
    _process: Process,
}

/// An element of the page, by its WebDriver reference.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` x `height` window.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = paths::free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command.arg(format!("--port={port}"));
        let process = Process::spawn("chromedriver", command);
        let driver = SocketAddr::from(([127, 0, 0, 1], port));
        poll::within(poll::DEADLINE, poll::INTERVAL, || {
            http::get(driver, "/status", &[]).map_err(|error| error.to_string())
        })
        .unwrap_or_else(|error| panic!("chromedriver never answered: {error}"));
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        "--disable-background-networking", "--disable-sync",
                        "--disable-component-update", "--disable-default-apps",
                        format!("--window-size={width},{height}"),
                    ],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            }}
        });
        let answer = command_to(driver, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|error| panic!("no browser session: {error}"));
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
        Browser {
            driver,
            session,
            _process: process,
        }
    }

    /// Sends a command of this session; its `value`, or the driver's error as text.
    pub fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        command_to(self.driver, method, &path, body)
    }

    /// [`Browser::try_command`], panicking on an error.
    pub fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    pub fn open(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        );
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page: its result.
    pub fn run(&self, script: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1]` with its result.
    pub fn run_async(&self, script: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The first element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let answer = self
            .try_command(
                "POST",
                "/element",
                Some(&json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        answer[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Every element `css` selects.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let answer = self.command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        answer
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|found| found[ELEMENT].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    /// Waits until `css` selects a displayed element: that element.
    pub fn wait_for(&self, css: &str) -> Element {
        poll::within(poll::DEADLINE, poll::INTERVAL, || match self.find(css) {
            Some(element) if self.displayed(&element) => Ok(element),
            _ => Err(()),
        })
        .unwrap_or_else(|()| {
            panic!(
                "no {css} on the page; it shows: {}",
                self.run("return document.body.innerText", &[])
            )
        })
    }

    /// Waits until the element `css` selects has text containing `needle`: the text.
    pub fn wait_for_text(&self, css: &str, needle: &str) -> String {
        poll::within(poll::DEADLINE, poll::INTERVAL, || {
            let text = self
                .find(css)
                .map(|element| self.text(&element))
                .unwrap_or_default();
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .unwrap_or_else(|seen| panic!("{css} never said {needle:?}; last: {seen:?}"))
    }

    pub fn displayed(&self, element: &Element) -> bool {
        self.try_command("GET", &format!("/element/{}/displayed", element.0), None)
            .map(|value| value == Value::Bool(true))
            .unwrap_or(false)
    }

    pub fn text(&self, element: &Element) -> String {
        self.try_command("GET", &format!("/element/{}/text", element.0), None)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self.command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        );
        value.as_str().map(str::to_owned)
    }

    pub fn click(&self, element: &Element) {
        self.command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        );
    }

    /// Clears the field and types `text` into it, as keystrokes.
    pub fn type_into(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(&json!({})),
        );
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        );
    }

    /// The browser's console and network messages since the last call (`SEVERE` are
    /// errors: a failed script, a refused resource, a CSP violation).
    pub fn log(&self) -> Vec<Value> {
        self.command("POST", "/se/log", Some(&json!({ "type": "browser" })))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The URLs of every resource the page loaded (the page itself included).
    pub fn resources(&self) -> Vec<String> {
        let urls = self.run(
            "return [location.href, ...performance.getEntriesByType('resource').map((entry) => entry.name)]",
            &[],
        );
        urls.as_array()
            .into_iter()
            .flatten()
            .filter_map(|url| url.as_str().map(str::to_owned))
            .collect()
    }

    /// Saves a PNG of the window as `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|error| panic!("screenshot is not base64: {error}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("{}: {error}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_command("DELETE", "", None);
    }
}

/// Where the test run writes its screenshots (not committed).
pub fn screenshot_dir() -> PathBuf {
    paths::target_dir().join("console-screenshots")
}

/// One WebDriver command to `driver`: the answer's `value`, or its error as text.
fn command_to(
    driver: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    if method != "GET" {
        raw.push_str("content-type: application/json; charset=utf-8\r\n");
        raw.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(&body);
    let response = http::send_raw_within(driver, raw.as_bytes(), Duration::from_secs(120))
        .map_err(|error| error.to_string())?;
    let answer: Value = serde_json::from_slice(&response.body)
        .map_err(|error| format!("{error}: {}", response.text()))?;
    if response.status == 200 {
        Ok(answer["value"].clone())
    } else {
        Err(format!("{}: {}", response.status, answer["value"]))
    }
}
