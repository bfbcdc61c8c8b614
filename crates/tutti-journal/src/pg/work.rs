//! [`WorkQueue`] on PostgreSQL: the `work`, `workers` and `sessions` tables of the journal's schema, claimed
//! with `FOR UPDATE SKIP LOCKED`, and `NOTIFY` on `tutti_work` (offers, for workers) and on each run's own
//! channel (claims and completions, for its driver). One connection, which also listens.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Row};

use super::{PgStore, channel, connect};
use crate::event::RunId;
use crate::store::{Error, Result};
use crate::work::{Claim, Offer, WorkQueue, WorkState, WorkerInfo};

/// The work queue in the journal at a URL, on a connection of its own that listens for changes.
pub struct PgWorkQueue {
    client: Client,
    /// The schema of the journal's tables, part of every channel's name.
    schema: String,
}

impl std::fmt::Debug for PgWorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWorkQueue").finish_non_exhaustive()
    }
}

impl PgWorkQueue {
    /// Opens the queue of the journal at `url` (creating the journal's tables on first use). A worker
    /// listens for offers; a driver for what happens to the work of `run`.
    pub fn open(url: &str, listen_to: Listen<'_>) -> Result<Self> {
        let store = PgStore::open(url)?;
        let mut config = store.config.clone();
        // Named in `pg_stat_activity`, unless the URL names it.
        if config.get_application_name().is_none() {
            config.application_name(match listen_to {
                Listen::Offers => "tutti worker",
                Listen::Run(_) => "tutti driver",
            });
        }
        let mut client = connect(&config, &store.shown)?;
        let schema = store.schema.clone();
        let channel = match listen_to {
            Listen::Offers => offers_channel(&schema),
            Listen::Run(run) => run_channel(&schema, run),
        };
        client.batch_execute(&format!("LISTEN \"{channel}\""))?;
        Ok(Self { client, schema })
    }
}

/// What a queue's connection listens for.
#[derive(Clone, Copy, Debug)]
pub enum Listen<'a> {
    /// New offers (a worker).
    Offers,
    /// Claims and completions of one run's work (its driver).
    Run(&'a RunId),
}

/// The channel on which workers hear of new offers.
fn offers_channel(schema: &str) -> String {
    channel(schema, "offers", "")
}

/// The channel on which a run's driver hears of its work.
fn run_channel(schema: &str, run: &RunId) -> String {
    channel(schema, "work", run)
}

fn state_of(row: &Row) -> WorkState {
    let (state, worker, claims): (String, Option<String>, i32) = (row.get(1), row.get(2), row.get(3));
    let (worker, claims, previous) = (worker.unwrap_or_default(), claims as u32, row.get(4));
    match state.as_str() {
        "claimed" => WorkState::Claimed { worker, claims, previous },
        "done" => {
            let outcome: Option<String> = row.get(5);
            let outcome = outcome.and_then(|o| serde_json::from_str(&o).ok()).unwrap_or_default();
            WorkState::Done { worker, claims, previous, outcome }
        }
        "withdrawn" => WorkState::Withdrawn,
        _ => WorkState::Queued,
    }
}

impl WorkQueue for PgWorkQueue {
    fn offer(&mut self, offer: &Offer) -> Result<i64> {
        let job = serde_json::to_string(&offer.job).map_err(Error::Encode)?;
        let attempt = i64::from(offer.attempt);
        let mut tx = self.client.transaction()?;
        // Not flushed: the driver journaled the attempt's start durably before offering it, and a driver that
        // lost its server with the offer resumes and offers the effect again.
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        // An earlier attempt of the same effect (a driver that restarted) is not run any more.
        tx.execute(
            "UPDATE work SET state = 'withdrawn' WHERE run_id = $1 AND effect = $2 AND attempt < $3
             AND state IN ('queued', 'claimed')",
            &[&offer.run, &offer.effect.as_str(), &attempt],
        )?;
        // Offering the same attempt again (a driver that restarted) finds the row already there.
        let row = tx.query_one(
            "INSERT INTO work (run_id, effect, attempt, harness, job, session) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (run_id, effect, attempt) DO UPDATE SET job = work.job RETURNING id",
            &[&offer.run, &offer.effect.as_str(), &attempt, &offer.harness, &job, &offer.session],
        )?;
        tx.execute("SELECT pg_notify($1, '')", &[&offers_channel(&self.schema)])?;
        tx.commit()?;
        Ok(row.get(0))
    }

    fn work_states(&mut self, ids: &[i64]) -> Result<Vec<(i64, WorkState)>> {
        let rows = self
            .client
            .query("SELECT id, state, worker, claims, previous, outcome FROM work WHERE id = ANY($1)", &[&ids])?;
        let mut states: Vec<(i64, WorkState)> = rows.iter().map(|r| (r.get(0), state_of(r))).collect();
        states.sort_by_key(|(id, _)| ids.iter().position(|i| i == id));
        Ok(states)
    }

    fn withdraw(&mut self, id: i64) -> Result<()> {
        self.client
            .execute("UPDATE work SET state = 'withdrawn' WHERE id = $1 AND state IN ('queued', 'claimed')", &[&id])?;
        Ok(())
    }

    fn claim(&mut self, worker: &str, harnesses: &[String], now_ms: i64, ttl_ms: i64) -> Result<Option<Claim>> {
        let mut tx = self.client.transaction()?;
        let row = tx.query_opt(
            "WITH next AS (
                SELECT w.id FROM work w
                WHERE w.harness = ANY($2)
                  AND (w.state = 'queued' OR (w.state = 'claimed' AND w.lease_until < $3))
                  AND (w.session IS NULL OR NOT EXISTS (
                      SELECT 1 FROM sessions s JOIN workers k ON k.id = s.worker
                      WHERE s.session = w.session AND s.worker <> $1 AND k.heartbeat_ms >= $3::bigint - $4::bigint))
                ORDER BY w.id LIMIT 1 FOR UPDATE OF w SKIP LOCKED
             )
             UPDATE work SET state = 'claimed',
                    previous = CASE WHEN work.state = 'claimed' THEN work.worker ELSE work.previous END,
                    worker = $1, token = work.token + 1, claims = work.claims + 1, lease_until = $3::bigint + $4::bigint
             FROM next WHERE work.id = next.id
             RETURNING work.id, work.token, work.run_id, work.effect, work.attempt, work.harness, work.job,
                       work.previous, work.session, work.claims",
            &[&worker, &harnesses, &now_ms, &ttl_ms],
        )?;
        let Some(row) = row else {
            tx.commit()?;
            return Ok(None);
        };
        let run: String = row.get(2);
        let session: Option<String> = row.get(8);
        let session_holder = match &session {
            Some(s) => tx
                .query_opt("SELECT worker FROM sessions WHERE session = $1", &[s])?
                .map(|r| r.get::<_, String>(0))
                .filter(|holder| holder != worker),
            None => None,
        };
        tx.execute("SELECT pg_notify($1, '')", &[&run_channel(&self.schema, &run)])?;
        tx.commit()?;
        let job: String = row.get(6);
        let claims: i32 = row.get(9);
        Ok(Some(Claim {
            id: row.get(0),
            token: row.get(1),
            effect: row.get::<_, String>(3).as_str().into(),
            attempt: row.get::<_, i64>(4) as u32,
            harness: row.get(5),
            job: serde_json::from_str(&job)
                .map_err(|e| Error::Corrupt { path: "work queue".into(), detail: format!("job of {run}: {e}") })?,
            previous: if claims > 1 { row.get(7) } else { None },
            session_holder,
            run,
        }))
    }

    fn heartbeat(&mut self, me: &WorkerInfo, claims: &[(i64, i64)], now_ms: i64, ttl_ms: i64) -> Result<Vec<bool>> {
        let mut tx = self.client.transaction()?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        tx.execute(
            "INSERT INTO workers (id, host, pid, harnesses, capacity, running, heartbeat_ms, draining)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, harnesses = $4, capacity = $5, running = $6,
                 heartbeat_ms = $7, draining = $8",
            &[
                &me.id,
                &me.host,
                &i64::from(me.pid),
                &me.harnesses,
                &(me.capacity as i32),
                &(me.running as i32),
                &now_ms,
                &me.draining,
            ],
        )?;
        let (ids, tokens): (Vec<i64>, Vec<i64>) = claims.iter().copied().unzip();
        let kept: Vec<i64> = tx
            .query(
                "UPDATE work w SET lease_until = $3::bigint + $4::bigint FROM unnest($1::bigint[], $2::bigint[]) AS c(id, token)
                 WHERE w.id = c.id AND w.token = c.token AND w.state = 'claimed' AND w.worker = $5 RETURNING w.id",
                &[&ids, &tokens, &now_ms, &ttl_ms, &me.id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit()?;
        Ok(ids.iter().map(|id| kept.contains(id)).collect())
    }

    fn complete(
        &mut self,
        id: i64,
        token: i64,
        worker: &str,
        outcome: &serde_json::Value,
        session: Option<&str>,
    ) -> Result<bool> {
        let outcome = serde_json::to_string(outcome).map_err(Error::Encode)?;
        let mut tx = self.client.transaction()?;
        let row = tx.query_opt(
            "UPDATE work SET state = 'done', outcome = $4 WHERE id = $1 AND token = $2 AND worker = $3
             AND state = 'claimed' RETURNING run_id",
            &[&id, &token, &worker, &outcome],
        )?;
        let Some(row) = row else {
            tx.commit()?;
            return Ok(false);
        };
        if let Some(session) = session {
            tx.execute(
                "INSERT INTO sessions (session, worker) VALUES ($1, $2)
                 ON CONFLICT (session) DO UPDATE SET worker = $2",
                &[&session, &worker],
            )?;
        }
        tx.execute("SELECT pg_notify($1, '')", &[&run_channel(&self.schema, &row.get::<_, String>(0))])?;
        tx.commit()?;
        Ok(true)
    }

    fn workers(&mut self) -> Result<Vec<WorkerInfo>> {
        let rows = self.client.query(
            "SELECT id, host, pid, harnesses, capacity, running, heartbeat_ms, draining FROM workers ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| WorkerInfo {
                id: r.get(0),
                host: r.get(1),
                pid: r.get::<_, i64>(2) as u32,
                harnesses: r.get(3),
                capacity: r.get::<_, i32>(4) as u32,
                running: r.get::<_, i32>(5) as u32,
                heartbeat_ms: r.get(6),
                draining: r.get(7),
            })
            .collect())
    }

    fn unregister(&mut self, worker: &str) -> Result<()> {
        self.client.execute("DELETE FROM workers WHERE id = $1", &[&worker])?;
        Ok(())
    }

    fn wait_for_work(&mut self, timeout: Duration) -> Result<bool> {
        let mut notifications = self.client.notifications();
        let heard = notifications.timeout_iter(timeout).next()?.is_some();
        while notifications.iter().next()?.is_some() {}
        Ok(heard)
    }
}
