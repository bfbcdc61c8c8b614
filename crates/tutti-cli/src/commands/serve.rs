//! `tutti serve [--port N]`: the local web dashboard. An HTTP server on 127.0.0.1 (axum on a one-thread tokio
//! runtime) that serves one page embedded in the binary and a small JSON API over the project's journal, with
//! server-sent events for what changes. Every request needs the random token printed in the URL (401 without
//! it). It only reads the journal, except the breakpoint buttons, which queue the same command as
//! `tutti approve`; the run's driver, in whatever process drives it, applies and journals it.

mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tutti_journal::Store;

use crate::commands::inspect::{now_ms, run_or_latest, status_of};
use crate::commands::{control, logs, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

const PAGE: &str = include_str!("serve/page.html");
/// How often an open event stream looks at the journal for news.
const POLL: Duration = Duration::from_millis(250);

/// What every request handler shares: where the journal is and the token a request must carry.
struct Served {
    store: crate::config::StoreLocation,
    token: String,
}

type Shared = Arc<Served>;

/// A failed request: the status and a message for the page.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        let status = if e.is::<UserError>() { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
        Failure(status, format!("{e:#}"))
    }
}

pub(crate) fn serve(config: &Config, port: u16, shutdown: Arc<AtomicBool>) -> Result<i32> {
    // The journal must exist and be sound before anything is served.
    drop(open_store(config)?);
    let served = Arc::new(Served { store: config.store.clone(), token: token()? });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            UserError::new(format!("cannot listen on 127.0.0.1:{port}: {e} (pass another --port, or 0 for any)"))
        })?;
        let address = listener.local_addr()?;
        output::note(&format!("dashboard of {} (Ctrl-C stops it)", config.root.display()));
        output::data(&format!("http://{address}/?token={}", served.token));
        let server = tokio::spawn(async move { axum::serve(listener, router(served)).await });
        // Event streams never end by themselves: on Ctrl-C, stop serving at once rather than wait for them (the
        // runtime's end drops the server task).
        while !shutdown.load(Ordering::SeqCst) && !server.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if server.is_finished() {
            server.await??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(EXIT_OK)
}

fn router(served: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/runs", get(runs))
        .route("/api/run", get(run))
        .route("/api/logs", get(transcript))
        .route("/api/approve", post(approve))
        .route("/api/stream", get(stream))
        .layer(middleware::from_fn_with_state(served.clone(), authorize))
        .with_state(served)
}

/// A random token from the kernel, as 32 hex digits.
fn token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(tutti_engine::identity::hex(&bytes))
}

/// Every request carries the token: `?token=` (the page's own URL, and event streams, which cannot set
/// headers) or `Authorization: Bearer`. Anything else gets 401 and learns nothing.
async fn authorize(State(served): State<Shared>, request: Request, next: Next) -> Response {
    let from_query =
        request.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("token="));
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = from_query.or(from_header).unwrap_or("");
    if !same(given.as_bytes(), served.token.as_bytes()) {
        return Failure(StatusCode::UNAUTHORIZED, "missing or wrong token: open the URL `tutti serve` printed".into())
            .into_response();
    }
    next.run(request).await
}

/// Compare without stopping at the first difference, so timing tells nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Run `f` on a fresh connection to the journal, off the async thread.
async fn with_store<T: Send + 'static>(
    served: &Served,
    f: impl FnOnce(&mut dyn Store) -> Result<T> + Send + 'static,
) -> Result<T, Failure> {
    let at = served.store.clone();
    let joined = tokio::task::spawn_blocking(move || f(&mut *super::reopen_at(&at)?)).await;
    joined.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?.map_err(Failure::from)
}

async fn runs(State(served): State<Shared>) -> Result<Json<Value>, Failure> {
    let list = with_store(&served, |store| {
        let mut list = Vec::new();
        for r in store.runs()?.into_iter().rev() {
            let shown = status_of(store, &r)?;
            list.push(json!({ "id": r.id, "process": r.process, "status": shown, "createdMs": r.created_ms,
                              "updatedMs": r.updated_ms, "events": r.events }));
        }
        Ok(list)
    })
    .await?;
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
struct RunQuery {
    run: Option<String>,
}

async fn run(State(served): State<Shared>, Query(q): Query<RunQuery>) -> Result<Json<Value>, Failure> {
    let snapshot = with_store(&served, move |store| {
        let id = run_or_latest(store, q.run.as_deref())?;
        view::snapshot(store, &id)
    })
    .await?;
    Ok(Json(snapshot))
}

#[derive(Deserialize)]
struct LogsQuery {
    run: String,
    /// An effect id or `GROUP/MEMBER`.
    target: String,
}

/// The readable transcript of an effect or member, as `tutti logs` prints it.
async fn transcript(State(served): State<Shared>, Query(q): Query<LogsQuery>) -> Result<Json<Value>, Failure> {
    let text = with_store(&served, move |store| {
        let records = store.read(&q.run, 0)?;
        let found = logs::attempts(store, &records, Some(&q.target));
        let text: Vec<String> = found.iter().map(logs::render).collect();
        Ok(text.join("\n\n"))
    })
    .await?;
    Ok(Json(json!({ "text": text })))
}

#[derive(Deserialize)]
struct Approval {
    run: String,
    effect: String,
    #[serde(default)]
    reject: bool,
    response: Option<String>,
}

/// A breakpoint button: the same checks and the same queued command as `tutti approve`, journaled by the
/// run's driver with who gave it (`via: dashboard`).
async fn approve(State(served): State<Shared>, Json(a): Json<Approval>) -> Result<Json<Value>, Failure> {
    let live = with_store(&served, move |store| {
        let mut by = crate::caller::actor();
        by.via = "dashboard".into();
        let command = control::approval(store, &a.run, &a.effect, a.reject, a.response, by)?;
        tutti_journal::CommandQueue::post_command(store, &a.run, &command)?;
        Ok(crate::commands::live_driver(store, &a.run)?.is_some())
    })
    .await?;
    Ok(Json(json!({ "queued": true, "driverLive": live })))
}

/// Server-sent events over the journal: `runs` when the list of runs changes, and with `?run=ID`, `journal`
/// with the kinds and sequence numbers of that run's new events. The page refetches what it shows.
async fn stream(State(served): State<Shared>, Query(q): Query<RunQuery>) -> impl IntoResponse {
    let watch = Watch { served, run: q.run, after: 0, runs: None };
    let events = futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            match w.news().await {
                Some(event) => return Some((Ok::<_, Infallible>(event), w)),
                None => tokio::time::sleep(POLL).await,
            }
        }
    });
    axum::response::Sse::new(events).keep_alive(KeepAlive::default())
}

/// What one event stream has told its page so far.
struct Watch {
    served: Shared,
    run: Option<String>,
    after: u64,
    /// Run count and total events at the last `runs` event.
    runs: Option<(usize, u64)>,
}

impl Watch {
    async fn news(&mut self) -> Option<Sse> {
        let (run, after) = (self.run.clone(), self.after);
        let seen = with_store(&self.served, move |store| {
            let all = store.runs()?;
            let signature = (all.len(), all.iter().map(|r| r.events).sum::<u64>());
            let fresh = match run {
                Some(run) => store.read(&run, after)?,
                None => Vec::new(),
            };
            Ok((signature, fresh))
        })
        .await;
        let (signature, fresh) = match seen {
            Ok(seen) => seen,
            Err(Failure(_, message)) => return Some(Sse::default().event("failure").data(message)),
        };
        if let Some(last) = fresh.last() {
            self.after = last.seq;
            let kinds: Vec<Value> =
                fresh.iter().rev().take(100).rev().map(|r| json!([r.seq, r.ts_ms, r.event.kind()])).collect();
            let data = json!({ "lastSeq": last.seq, "events": kinds, "now": now_ms() });
            return Some(Sse::default().event("journal").data(data.to_string()));
        }
        if self.runs != Some(signature) {
            self.runs = Some(signature);
            return Some(Sse::default().event("runs").data(signature.0.to_string()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"", b"abc"));
        let t = token().expect("urandom");
        assert_eq!(t.len(), 32);
        assert_ne!(t, token().expect("urandom"));
    }
}
