//! `tutti serve`: the dashboard in a real headless Chromium, driven over the DevTools protocol, while another
//! `tutti run` drives a run: the member grid updates live, the page's button approves a breakpoint, and a
//! request without the token gets 401.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;
use tutti_testkit::chromium::Browser;
use tutti_testkit::{Project, of_kind, show, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");
const WITHIN: Duration = Duration::from_secs(60);

/// The status line of a raw HTTP/1.1 GET to `address` (`127.0.0.1:PORT`).
fn http_status(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to tutti serve");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    reply.lines().next().unwrap_or("").to_string()
}

/// The dashboard's URL, as `tutti serve` prints it on stdout.
fn url_of(serve: &tutti_testkit::Spawned) -> String {
    let mut url = None;
    wait_for(WITHIN, "tutti serve prints its URL", || {
        url = serve.stdout().lines().find(|l| l.starts_with("http://")).map(String::from);
        url.is_some()
    });
    url.expect("waited for it")
}

#[test]
fn the_dashboard_shows_members_live_and_its_button_approves_a_breakpoint() {
    let project = Project::new(TUTTI);
    let gate = project.path("gate");
    // Each member says what it does, then works until the test opens the gate.
    project.write(
        "tutti.toml",
        format!(
            "[harness.alpha]\nmax_parallel = 3\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; tutti msg progress \
             'editing src/lib.rs'; while [ ! -e {} ]; do sleep 0.05; done; echo '{{\\\"done\\\":true}}'\"]\n",
            gate.display()
        ),
    );
    project.write(
        "team.js",
        r#"
import { defineTask } from "tutti";
const edit = defineTask("edit", (a) => ({ kind: "agent", title: `edit as ${a.who}`, agent: { prompt: `edit as ${a.who}` } }));
export async function process(inputs, ctx) {
  const team = ctx.group("crew", { members: ["ann", "ben", "cid"], harness: "alpha" });
  const edits = await team.all((m) => m.task(edit, { who: m.name }));
  const verdict = await ctx.breakpoint({ question: "merge the crew's edits?", title: "merge" });
  return { edits: edits.length, approved: verdict.approved };
}
"#,
    );
    let run = project.spawn(&["run", "team.js"]);
    let run_id = run.run_id();
    let serve = project.spawn(&["serve", "--port", "0"]);
    let url = url_of(&serve);
    let address = url.trim_start_matches("http://").split('/').next().unwrap_or("").to_string();

    // Without the token, or with a wrong one, nothing is served.
    assert!(http_status(&address, "/").contains(" 401 "), "the page without the token");
    assert!(http_status(&address, "/api/runs").contains(" 401 "), "the API without the token");
    assert!(http_status(&address, "/api/runs?token=0123").contains(" 401 "), "a wrong token");
    let token = url.split("token=").nth(1).unwrap_or("");
    assert!(http_status(&address, &format!("/api/runs?token={token}")).contains(" 200 "), "with the token");

    let profile = tempfile::tempdir().expect("a browser profile");
    let mut browser = Browser::launch(profile.path()).expect("headless chromium");
    browser.open(&format!("{url}&run={run_id}")).expect("open the dashboard");
    // A mark on the dashboard's window (not the blank page before it): it survives only if the page is never
    // reloaded.
    browser
        .wait_for(
            "the page loads",
            "location.protocol === 'http:' && document.readyState === 'complete' && (window.__mark = 7)",
            WITHIN,
        )
        .expect("load");

    let states = "JSON.stringify([...document.querySelectorAll('#groups tr[data-member]')].map(r => \
                  [r.dataset.member, r.querySelector('.state').textContent, r.querySelector('.note').textContent]))";
    let running = format!(
        "(() => {{ const s = JSON.parse({states}); return s.length === 3 && s.every(m => m[1] === 'running' && \
         m[2] === 'editing src/lib.rs') && {states}; }})()"
    );
    let seen = browser.wait_for("three members running, with their progress", &running, WITHIN).expect("grid");
    assert!(seen.as_str().is_some_and(|s| s.contains("crew/ann")), "{seen}");

    // The members finish: the grid follows without a reload, and the breakpoint shows its buttons.
    std::fs::write(&gate, "").expect("open the gate");
    let idle = format!(
        "(() => {{ const s = JSON.parse({states}); return s.length === 3 && s.every(m => m[1] === 'idle'); }})()"
    );
    browser.wait_for("the members done, live", &idle, WITHIN).expect("live grid");
    assert_eq!(browser.eval("window.__mark").expect("mark"), Value::from(7), "the page was reloaded");
    let button = "document.querySelector('button[data-approve]')";
    browser
        .wait_for("the breakpoint's approve button", &format!("{button} && {button}.dataset.approve"), WITHIN)
        .expect("button");
    browser.eval(&format!("{button}.click(), true")).expect("click approve");

    let out = run.wait(WITHIN);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "edits": 3, "approved": true }));
    let events = project.events(&run_id);
    let applied = of_kind(&events, "control_applied");
    assert_eq!(applied.len(), 1, "{}", show(&events));
    assert_eq!(
        (applied[0]["event"]["action"].as_str(), applied[0]["event"]["by"]["via"].as_str()),
        (Some("approve"), Some("dashboard"))
    );

    browser
        .wait_for(
            "the run shown completed",
            "document.querySelector('#run-status')?.textContent === 'completed'",
            WITHIN,
        )
        .expect("completed");
    let bars = browser.eval("document.querySelectorAll('#timeline .bar.ok').length").expect("timeline");
    assert_eq!(bars, Value::from(3), "one timeline bar per attempt");
    browser.eval("openTranscript('crew/ben'), true").expect("open a transcript");
    browser
        .wait_for(
            "ben's transcript",
            "document.querySelector('#transcript').textContent.includes('edit as ben')",
            WITHIN,
        )
        .expect("transcript");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot).expect("screenshot");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a real screenshot at {}", shot.display());
}
