//! What counts as damage to the journal file, whichever statement stumbles on it: SQLite's own corruption codes,
//! and cells that hold what the schema cannot (text that is not UTF-8, a number where text belongs); and the
//! whole-journal check every command runs first (`verify_in`).

use rusqlite::{ErrorCode, OptionalExtension};

use super::SqliteStore;

use crate::store::{Error, Result};

pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
        // Values the schema cannot hold: text that is not UTF-8, a number where text belongs. SQLite's own
        // integrity check does not look at what cells hold, so damage there first shows when a row is read.
        || matches!(
            e,
            rusqlite::Error::Utf8Error(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
        )
}

/// Reports damage to the file as [`Error::Corrupt`], whichever statement stumbled on it.
pub(super) fn classify(path: &str, err: Error) -> Error {
    match err {
        Error::Sqlite(e) if is_corruption(&e) => corrupt(path, e.to_string()),
        other => other,
    }
}

pub(super) fn corrupt(path: &str, detail: String) -> Error {
    Error::Corrupt { path: path.to_owned(), detail }
}

impl SqliteStore {
    /// The storage's own check, then that each run's events are numbered 1..=n as its row says, that every
    /// body is JSON, that times are plausible and that no events are orphaned.
    pub(super) fn verify_in(&self) -> Result<()> {
        const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;
        // integrity_check, not quick_check: it also checks that indexes agree with their tables, and the only
        // large table (events) has no secondary index, so it costs about the same.
        let mut stmt = self.conn.prepare("PRAGMA integrity_check(3)")?;
        let problems: Vec<String> = stmt.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
        if problems.first().map(String::as_str) != Some("ok") {
            let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
            return Err(self.corrupt(format!("SQLite's integrity check found: {}", shown.join("; "))));
        }
        let bad: Option<(String, i64, i64, i64)> = self
            .conn
            .query_row(
                "SELECT r.id, r.events, count(e.seq), coalesce(max(e.seq), 0) FROM runs r
                 LEFT JOIN events e ON e.run_id = r.id GROUP BY r.id
                 HAVING r.events != count(e.seq) OR r.events != coalesce(max(e.seq), 0) LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        if let Some((run, recorded, count, max)) = bad {
            return Err(self.corrupt(format!(
                "run {run} records {recorded} events but {count} are stored, the last numbered {max}"
            )));
        }
        let unreadable: Option<(String, i64)> = self
            .conn
            .query_row("SELECT run_id, seq FROM events WHERE NOT json_valid(body) LIMIT 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((run, seq)) = unreadable {
            return Err(self.corrupt(format!("event {seq} of run {run} is not valid JSON")));
        }
        // Timestamps are plain integers, unchecked by SQLite: a damaged one would be shown as if true. Each
        // event's lies between its run's creation (allowing a year of clock skew) and its last update, and the
        // last update is no later than a year past the newest event.
        let implausible: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT r.id, e.seq FROM events e JOIN runs r ON r.id = e.run_id
                 WHERE typeof(e.ts_ms) != 'integer' OR e.ts_ms < r.created_ms - ?1 OR e.ts_ms > r.updated_ms
                 UNION ALL
                 SELECT r.id, 0 FROM runs r JOIN events e ON e.run_id = r.id GROUP BY r.id
                 HAVING r.updated_ms < r.created_ms OR r.updated_ms > max(e.ts_ms) + ?1
                 LIMIT 1",
                [YEAR_MS],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((run, seq)) = implausible {
            let what = if seq == 0 { "its times".to_string() } else { format!("the time of event {seq}") };
            return Err(self.corrupt(format!("run {run}: {what} cannot be right")));
        }
        let orphans: Option<String> = self
            .conn
            .query_row(
                "SELECT DISTINCT run_id FROM events WHERE run_id NOT IN (SELECT id FROM runs) LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(run) = orphans {
            return Err(self.corrupt(format!("events of run {run} are stored, but the run is not")));
        }
        Ok(())
    }
}
