//! A small W3C WebDriver client over reqwest, driving Debian's headless chromium through
//! chromedriver: enough to open pages, click, type, press keys, run scripts, take screenshots
//! and read the browser's network log (to prove no request leaves the server).

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    /// The WebDriver session's URL, closed when the browser is dropped.
    session: Option<String>,
    base: String,
    http: reqwest::Client,
    /// Screenshots go here, one PNG per named step.
    pub shots: PathBuf,
    _profile: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Element(String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A fresh headless chromium behind its own chromedriver. The browser tests are built to
    /// run only with `MLJM_REQUIRE_BROWSER` (see `on_both_backends!`): a missing browser fails.
    pub async fn start(shots: &Path) -> Browser {
        let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
        assert!(
            Path::new(chromium).exists() && Path::new(driver).exists(),
            "the browser tests need {chromium} and {driver} (apt-get install chromium chromium-driver)"
        );
        let port = free_port();
        // Its own process group, so that the browsers it starts can be killed with it.
        let child = mljm::child::no_inherit(&mut Command::new(driver))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver: child,
            session: None,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            shots: shots.to_path_buf(),
            _profile: profile,
        };
        std::fs::create_dir_all(shots).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while browser
            .http
            .get(format!("{}/status", browser.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let session = browser.raw("POST", "/session", Some(caps)).await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        browser.session = Some(format!("{}/session/{id}", browser.base));
        browser.base = format!("{}/session/{id}", browser.base);
        browser.requested_urls().await; // the start page's, before any of ours
        browser
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req.send().await.expect("chromedriver answers");
        let v: Value = resp.json().await.expect("chromedriver answers JSON");
        if let Some(err) = v["value"].get("error") {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    async fn try_raw(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        }
        .send()
        .await
        .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        match v["value"].get("error") {
            Some(err) => Err(format!("{err}: {}", v["value"]["message"])),
            None => Ok(v["value"].clone()),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.raw("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.raw("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find_now(&self, css: &str) -> Result<Element, String> {
        let v = self
            .try_raw(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(Element(v[ELEMENT].as_str().unwrap_or_default().to_string()))
    }

    /// The first element matching `css`, waiting up to 20 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(css, Duration::from_secs(20)).await
    }

    pub async fn wait_for(&self, css: &str, within: Duration) -> Element {
        let deadline = std::time::Instant::now() + within;
        loop {
            match self.find_now(css).await {
                Ok(e) => return e,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "no element {css} on {}: {e}",
                    self.current_url().await
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.find_now(css).await.is_ok()
    }

    pub async fn click(&self, e: &Element) {
        self.raw("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.raw("POST", &format!("/element/{}/clear", e.0), None)
            .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.raw(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        let v = self
            .raw("GET", &format!("/element/{}/text", e.0), None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the text of `css` satisfies `pred`, returning it.
    pub async fn wait_text(
        &self,
        css: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(e) = self.find_now(css).await
                && let Ok(v) = self
                    .try_raw("GET", &format!("/element/{}/text", e.0), json!({}))
                    .await
            {
                let text = v.as_str().unwrap_or_default().to_string();
                if pred(&text) {
                    return text;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{css} still reads {text:?}"
                );
            }
            assert!(std::time::Instant::now() < deadline, "no element {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Presses keys on whatever has the focus (WebDriver key names, e.g. "\u{E003}" Backspace).
    pub async fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.raw(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.raw(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script`, whose last argument is the callback to call with the result.
    pub async fn script_async(&self, script: &str, args: Value) -> Value {
        self.raw(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub async fn accept_alert(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self
            .try_raw("POST", "/alert/accept", json!({}))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "no dialog to accept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves the page as `<shots>/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.raw("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .expect("a base64 screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        path
    }

    /// Every URL the browser asked for since the last call (Network.requestWillBeSent events
    /// of chromium's performance log), including those a Content-Security-Policy blocked.
    pub async fn requested_urls(&self) -> Vec<String> {
        let v = self
            .raw("POST", "/se/log", Some(json!({"type": "performance"})))
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                Some(
                    m["message"]["params"]["request"]["url"]
                        .as_str()?
                        .to_string(),
                )
            })
            .collect()
    }

    /// Fails when the browser fetched (or tried to fetch) anything from another host.
    pub async fn assert_only_local_requests(&self, origin: &str) -> usize {
        let urls = self.requested_urls().await;
        let foreign: Vec<&String> = urls
            .iter()
            // The browser's own pages (chrome://, about:, data:, blob:) never reach a network.
            .filter(|u| {
                ["http:", "https:", "ws:", "wss:", "ftp:"]
                    .iter()
                    .any(|s| u.starts_with(s))
            })
            .filter(|u| !u.starts_with(&format!("{origin}/")))
            .collect();
        assert!(foreign.is_empty(), "requests to other hosts: {foreign:?}");
        urls.len()
    }
}

/// Closes the session (chromium exits), then kills chromedriver's process group and any
/// process still using this browser's profile, even when the test failed: nothing outlives
/// the test.
impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Drop runs inside the test's runtime: a thread with its own runtime makes the call.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let client = reqwest::Client::new();
                    let close = client
                        .delete(&session)
                        .timeout(Duration::from_secs(10))
                        .send();
                    let _ = close.await;
                });
            })
            .join();
        }
        let group = self.driver.id() as i32;
        // SAFETY: kill(2) on the process group this Browser started; at worst it is gone.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
        kill_users_of(self._profile.path());
    }
}

/// Kills every process whose command line names `profile` (a chromium that left the group).
fn kill_users_of(profile: &Path) {
    let marker = profile.to_string_lossy().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            // SAFETY: kill(2) on a chromium of this test's profile.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
