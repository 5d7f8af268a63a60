//! The web console in a real browser: headless Chromium driven through a
//! chromedriver the test starts on a free loopback port (and that the
//! sandbox ends with everything else it marked). Logs in, starts a cluster
//! and sees its light turn green without a reload, stops it at once through
//! the confirm dialog, is refused a POST without the CSRF token, reads the
//! Korean page and is sent to the login page once logged out; on a
//! controller that stages changes, creates a cluster with the wizard,
//! reviews and saves it, and discards a staged delete; logged in with a
//! viewer token, sees the lights change but no control its role lacks. A
//! screenshot of each page goes to `target/console-screenshots/`.

mod common;

use common::*;
use dure_testkit::ChildProcess;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the screenshots go: beside the test binaries, under the target dir.
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("console-screenshots")
}

/// A chromedriver and the browser session it runs.
struct Chrome {
    browser: Browser,
    /// Ended by pid (its process group) when dropped; Chromium carries the
    /// sandbox's mark, so the sandbox ends it too.
    _driver: ChildProcess,
}

async fn chrome(sandbox: &Sandbox) -> Chrome {
    let port = free_port();
    let (mark, value) = sandbox.mark_env();
    let driver = ChildProcess::spawn(
        Path::new("chromedriver"),
        &[&format!("--port={port}"), "--allowed-ips=127.0.0.1"],
        &[(mark, value)],
        &sandbox.dir().join("chromedriver.log"),
    )
    .expect("chromedriver starts (Debian package chromium-driver)");
    let profile = sandbox.dir().join("chromium-profile");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1200,800",
                // The console is served over HTTPS by the domain CA, which
                // this throwaway profile does not know; TLS verification
                // itself is tested with the API's own clients.
                "--ignore-certificate-errors",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let capabilities = match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    };
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver takes a moment to listen; each attempt is bounded.
    let browser = eventually("chromedriver takes a session", SETTLE, || {
        let capabilities = capabilities.clone();
        let url = url.clone();
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; see {}",
            sandbox.dir().join("chromedriver.log").display()
        )
    });
    Chrome {
        browser,
        _driver: driver,
    }
}

/// One browser at a time: two Chromiums at once on a small machine make
/// every wait slower for nothing.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Chrome {
    /// Opens `path`. Every console page has the top header; a page without
    /// it is the browser's own error page (seen now and then on a loaded
    /// machine when a navigation cuts the open event stream), so the visit
    /// is made again, a bounded number of times.
    async fn goto(&self, sandbox: &Sandbox, path: &str) {
        let url = format!("{}{path}", sandbox.url());
        for _ in 0..3 {
            self.browser
                .goto(&url)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let console_page = self
                .browser
                .execute(
                    "return document.querySelector('header.top') !== null;",
                    vec![],
                )
                .await
                .ok();
            if console_page == Some(Value::Bool(true)) {
                return;
            }
        }
        let page = self.browser.source().await.unwrap_or_default();
        panic!("{path} did not open a console page:\n{page}");
    }

    /// Clicks the element `css` selects, once it is there: on a loaded
    /// machine a page may still be arriving when the click is asked for.
    async fn click(&self, css: &str) {
        let element = eventually(&format!("`{css}` is on the page"), SETTLE, || async {
            self.browser.find(Locator::Css(css)).await.ok()
        })
        .await;
        match element {
            Ok(element) => element
                .click()
                .await
                .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}")),
            Err(e) => {
                let page = self.browser.source().await.unwrap_or_default();
                panic!("{e}; the page at {}:\n{page}", self.path().await)
            }
        }
    }

    async fn type_into(&self, id: &str, text: &str) {
        self.browser
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into #{id}: {e}"));
    }

    /// Logs in with the sandbox's token from the login page a logged-out
    /// visit is sent to, and waits for the live event stream.
    async fn log_in(&self, sandbox: &Sandbox) {
        self.log_in_with(sandbox, sandbox.token()).await;
    }

    /// Logs in with `token`, as [`Chrome::log_in`] does.
    async fn log_in_with(&self, sandbox: &Sandbox, token: &str) {
        self.goto(sandbox, "/ui/clusters").await;
        assert_eq!(
            self.path().await,
            "/ui/login",
            "logged out, a page sends to the login"
        );
        self.type_into("token", token).await;
        self.click("form.login button[type=submit]").await;
        self.until(
            "the login lands on the cluster list",
            "return location.pathname === '/ui/clusters';",
        )
        .await;
        self.until(
            "the event stream is followed",
            "return document.getElementById('live').classList.contains('on');",
        )
        .await;
    }

    async fn close(self) {
        let Chrome { browser, _driver } = self;
        browser.close().await.expect("browser closes");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.browser.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    async fn script(&self, code: &str) -> Value {
        self.browser
            .execute(code, vec![])
            .await
            .expect("script runs")
    }

    async fn path(&self) -> String {
        self.browser
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    /// Waits until `code` (a script's body) returns `true`; a script that
    /// fails (the page is still loading) counts as not yet.
    async fn until(&self, what: &str, code: &str) {
        let met = eventually(what, SETTLE, || async {
            let answer = self.browser.execute(code, vec![]).await.ok();
            (answer == Some(Value::Bool(true))).then_some(())
        })
        .await;
        if let Err(e) = met {
            let page = self
                .browser
                .source()
                .await
                .unwrap_or_else(|e| format!("(no page source: {e})"));
            panic!("{e}; the page at {}:\n{page}", self.path().await);
        }
    }

    async fn status_of(&self, cluster: &str) -> Value {
        self.script(&format!(
            "const c = document.querySelector('tr[data-cluster=\"{cluster}\"] td.status'); return c && c.dataset.status;"
        ))
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_cluster_from_the_browser() {
    let _one_browser = ONE_BROWSER.lock().await;
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    for name in ["shop-1", "shop-2"] {
        client
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("server created");
    }
    create_cluster(&client, "shop", &["shop-1", "shop-2"]).await;
    let chrome = chrome(&sandbox).await;
    chrome.goto(&sandbox, "/ui/clusters").await;
    assert_eq!(chrome.path().await, "/ui/login");
    chrome.screenshot("login").await;
    chrome.log_in(&sandbox).await;
    assert_eq!(chrome.status_of("shop").await, json!("red"));
    // A page that reloads loses this.
    chrome
        .script("window.dureSamePage = true; return true;")
        .await;

    // Start: tick, press, and the light turns green by itself.
    chrome.click("#pick-shop").await;
    chrome.click("button[value=start]").await;
    chrome
        .until(
            "the outcome of the start is shown next to the buttons",
            "return document.getElementById('action-result').textContent.includes('start operation');",
        )
        .await;
    chrome
        .until(
            "the light turns green without a reload",
            "const c = document.querySelector('tr[data-cluster=\"shop\"] td.status'); return c.dataset.status === 'green' && window.dureSamePage === true;",
        )
        .await;
    let count = chrome
        .script("return document.querySelector('tr[data-cluster=\"shop\"] td.count').textContent;")
        .await;
    assert_eq!(count, json!("2 / 2"));
    assert_eq!(
        chrome
            .script("return document.getElementById('pick-shop').checked;")
            .await,
        json!(true),
        "a live refresh keeps the box ticked"
    );
    chrome.screenshot("clusters").await;

    // Immediate stop asks first, naming every server it kills.
    chrome.click("button[value=kill]").await;
    chrome
        .until(
            "the confirm dialog opens",
            "return document.getElementById('confirm-dialog').open;",
        )
        .await;
    let named = chrome
        .script("return document.getElementById('confirm-list').textContent;")
        .await;
    let named = named.as_str().unwrap_or_default().to_string();
    assert!(
        named.contains("shop-1 (n1") && named.contains("shop-2 (n1"),
        "{named}"
    );
    chrome.screenshot("confirm-kill").await;
    chrome.click("#confirm-ok").await;
    chrome
        .until(
            "the light leaves green once the members are killed",
            "const c = document.querySelector('tr[data-cluster=\"shop\"]'); return c.querySelector('td.status').dataset.status !== 'green' && c.querySelector('td.count').textContent === '0 / 2' && window.dureSamePage === true;",
        )
        .await;
    let shop_operations = dure_api::OperationQuery {
        cluster: Some("shop".into()),
        ..Default::default()
    };
    let operations = client
        .list_operations(&shop_operations)
        .await
        .expect("operations");
    assert_eq!(
        operations.first().map(|op| op.kind.to_string()),
        Some("kill".to_string()),
        "{operations:?}"
    );

    // A POST of the session without its CSRF token is refused, and nothing starts.
    let status = chrome
        .script(
            "return fetch('/ui/clusters/action', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'action=start&cluster=shop'}).then(r => r.status);",
        )
        .await;
    assert_eq!(status, json!(403));
    let after = client
        .list_operations(&shop_operations)
        .await
        .expect("operations");
    assert_eq!(after.len(), operations.len(), "no operation began");

    // Every read page, for the record.
    for (path, name) in [
        ("/ui/clusters/shop", "cluster-detail"),
        ("/ui/nodes", "nodes"),
        ("/ui/servers", "servers"),
        ("/ui/servers/shop-1", "server"),
        ("/ui/events", "events"),
        ("/ui/history", "history"),
        ("/ui/balancers", "balancers"),
        ("/ui/changes", "changes-empty"),
    ] {
        chrome.goto(&sandbox, path).await;
        chrome
            .until(
                &format!("{path} shows"),
                "return document.querySelector('h1') !== null;",
            )
            .await;
        chrome.screenshot(name).await;
    }
    chrome.goto(&sandbox, "/ui/clusters").await;

    // The Korean page, through the switch.
    chrome.click("nav.lang a[lang=ko]").await;
    chrome
        .until(
            "the page turns Korean",
            "return document.documentElement.lang === 'ko';",
        )
        .await;
    let heading = chrome
        .script("return document.querySelector('h1').textContent;")
        .await;
    assert_eq!(heading, json!("클러스터"));
    chrome.screenshot("clusters-ko").await;

    // Logged out, the list is out of reach again.
    chrome.click("form.logout button").await;
    chrome
        .until(
            "logout lands on the login page",
            "return location.pathname === '/ui/login';",
        )
        .await;
    chrome.goto(&sandbox, "/ui/clusters").await;
    assert_eq!(chrome.path().await, "/ui/login");
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_cluster_with_the_wizard_and_saves_it() {
    let _one_browser = ONE_BROWSER.lock().await;
    let sandbox = staging_sandbox().await;
    let client = sandbox.client();
    let saving = sandbox.client().with_save(Some(true));
    for name in ["cart-1", "cart-2"] {
        saving
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("server saved");
    }
    let chrome = chrome(&sandbox).await;
    chrome.log_in(&sandbox).await;

    chrome.click("#create-cluster").await;
    chrome
        .until(
            "the wizard opens",
            "return location.pathname === '/ui/clusters/new';",
        )
        .await;
    chrome.type_into("cluster-name", "bad name").await;
    chrome
        .until(
            "the naming rule is checked as the name is typed",
            "return document.querySelector('#name-check [data-valid]').dataset.valid === 'no';",
        )
        .await;
    let said = chrome
        .script("return document.getElementById('name-check').textContent;")
        .await;
    assert!(
        said.as_str().unwrap_or_default().contains("is invalid"),
        "{said}"
    );
    chrome.screenshot("wizard-name").await;
    chrome
        .script("document.getElementById('cluster-name').value = ''; return true;")
        .await;
    chrome.type_into("cluster-name", "cart").await;
    chrome
        .until(
            "a good name is said to be free",
            "return document.querySelector('#name-check [data-valid]').dataset.valid === 'yes';",
        )
        .await;
    chrome.click("button[value=members]").await;
    chrome
        .until(
            "the members step shows",
            "return document.getElementById('member-cart-1') !== null;",
        )
        .await;
    chrome.click("#member-cart-1").await;
    chrome.click("#member-cart-2").await;
    chrome.screenshot("wizard-members").await;
    chrome.click("button[value=summary]").await;
    chrome
        .until(
            "the summary shows",
            "return document.getElementById('summary-members') !== null;",
        )
        .await;
    let summary = chrome
        .script("return document.getElementById('summary-members').textContent;")
        .await;
    let summary = summary.as_str().unwrap_or_default().to_string();
    assert!(
        summary.contains("cart-1 (n1") && summary.contains("cart-2 (n1"),
        "{summary}"
    );
    chrome.screenshot("wizard-summary").await;
    chrome.click("#finish").await;
    chrome
        .until(
            "the banner says the cluster is staged",
            "const b = document.querySelector('.banner'); return b !== null && b.textContent.includes('Staged');",
        )
        .await;
    assert!(
        client.get_cluster("cart").await.is_err(),
        "staged, not saved yet"
    );

    // Review shows the added document with its diff; save commits it.
    chrome.click(".banner a").await;
    chrome
        .until(
            "the review opens",
            "return location.pathname === '/ui/changes';",
        )
        .await;
    let kind = chrome
        .script("const s = document.querySelector('section.change'); return s && s.dataset.kind + ' ' + s.dataset.path;")
        .await;
    assert_eq!(kind, json!("added /clusters/cart/cluster.json"));
    chrome.screenshot("changes").await;
    chrome.click("#save-changes").await;
    chrome
        .until(
            "the review is empty once saved",
            "return document.getElementById('no-changes') !== null;",
        )
        .await;
    let cart = client.get_cluster("cart").await.expect("saved");
    assert_eq!(cart.spec.members, vec!["cart-1", "cart-2"]);

    // A staged delete, discarded, leaves the cluster.
    chrome.goto(&sandbox, "/ui/clusters").await;
    chrome.click("#pick-cart").await;
    chrome.click("button[value=delete]").await;
    chrome
        .until(
            "the delete asks first",
            "return document.getElementById('confirm-dialog').open;",
        )
        .await;
    chrome.click("#confirm-ok").await;
    chrome
        .until(
            "the delete is staged",
            "return document.getElementById('action-result').textContent.includes('deleted');",
        )
        .await;
    chrome.goto(&sandbox, "/ui/changes").await;
    let kind = chrome
        .script("const s = document.querySelector('section.change'); return s && s.dataset.kind;")
        .await;
    assert_eq!(kind, json!("deleted"));
    chrome.click("#discard-changes").await;
    chrome
        .until(
            "the review is empty once discarded",
            "return document.getElementById('no-changes') !== null;",
        )
        .await;
    assert!(client.get_cluster("cart").await.is_ok(), "still there");
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_watches_the_lights_but_is_offered_no_action() {
    let _one_browser = ONE_BROWSER.lock().await;
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("shop-1", "n1"))
        .await
        .expect("server created");
    create_cluster(&client, "shop", &["shop-1"]).await;
    let viewer = client
        .create_token(&dure_api::CreateToken {
            role: dure_core::access::Role::Viewer,
            ttl: None,
            description: "wall screen".into(),
            node: None,
        })
        .await
        .expect("viewer token")
        .token;
    let chrome = chrome(&sandbox).await;
    chrome.log_in_with(&sandbox, &viewer).await;
    assert_eq!(
        chrome
            .script("return document.getElementById('session-role').textContent;")
            .await,
        json!("Role: viewer")
    );
    assert_eq!(
        chrome
            .script("return document.querySelectorAll('#cluster-actions button[name=action], #create-cluster').length;")
            .await,
        json!(0),
        "no action is offered to a viewer"
    );
    assert_eq!(
        chrome
            .script("return document.getElementById('role-note').textContent.includes('operator');")
            .await,
        json!(true),
        "the page says which role would act"
    );

    // An operator starts the cluster elsewhere; the viewer's light follows.
    client
        .cluster_operation(
            "shop",
            dure_api::OperationKind::Start,
            &dure_core::operation::OperationOptions::default(),
        )
        .await
        .expect("started");
    chrome
        .until(
            "the viewer's light turns green without a reload",
            "const c = document.querySelector('tr[data-cluster=\"shop\"] td.status'); return c.dataset.status === 'green';",
        )
        .await;
    chrome.screenshot("clusters-viewer").await;

    // Nor a cluster's rolling restart on its own page.
    chrome.goto(&sandbox, "/ui/clusters/shop").await;
    assert_eq!(
        chrome
            .script("return document.getElementById('member-table') !== null && document.getElementById('cluster-restart') === null;")
            .await,
        json!(true)
    );

    // The wizard is not offered either, not even by its address.
    chrome.goto(&sandbox, "/ui/clusters/new").await;
    assert_eq!(
        chrome
            .script("return document.querySelector('form.wizard') === null && document.getElementById('role-note') !== null;")
            .await,
        json!(true)
    );
    chrome.close().await;
}
