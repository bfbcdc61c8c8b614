//! `tutti export` and `tutti import`: a run's whole journal as NDJSON, to back a run up or move it to
//! another project. The first line describes the file and the run; each further line is one event exactly as
//! `tutti events --json` prints it, except that values kept out of line are inlined, so the file alone holds
//! the run.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tutti_journal::{Event, NewEvent, Payload, Record, RunSummary};

use crate::commands::{find_run, open_or_create, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

/// The version of the export format, in its first line.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    tutti_export: u32,
    run: RunSummary,
}

/// Write run `run` to `to` (stdout when `None` or `-`).
pub(crate) fn export(config: &Config, run: &str, to: Option<&Path>) -> Result<i32> {
    let store = open_store(config)?;
    let id = find_run(store.as_ref(), run)?;
    let summary = store.run(&id)?.with_context(|| format!("run {id} vanished while exporting"))?;
    let records = store.read(&id, 0)?;
    let mut out: Box<dyn Write> = match to.filter(|p| p.as_os_str() != "-") {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).map_err(|e| UserError::new(format!("cannot write {}: {e}", path.display())))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let header = Header { tutti_export: FORMAT, run: summary };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    let count = records.len();
    for mut record in records {
        for payload in record.event.payloads_mut() {
            if let Payload::Blob { .. } = payload {
                *payload = Payload::Inline(store.load(payload)?);
            }
        }
        writeln!(out, "{}", serde_json::to_string(&record)?)?;
    }
    out.flush()?;
    if let Some(path) = to.filter(|p| p.as_os_str() != "-") {
        output::note(&format!("run {id}: {count} events written to {}", path.display()));
    }
    Ok(EXIT_OK)
}

/// Add the run in export file `from` (stdin when `-`) to this project, under its own id.
pub(crate) fn import(config: &Config, from: &Path) -> Result<i32> {
    let shown = from.display().to_string();
    let reader: Box<dyn BufRead> = if from.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(from).map_err(|e| UserError::new(format!("cannot read {shown}: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    let (header, events) = parse(reader, &shown)?;
    let mut store = open_or_create(config)?;
    let id = header.run.id;
    if store.run(&id)?.is_some() {
        return Err(UserError::new(format!("{shown}: run {id} already exists in this project")).into());
    }
    store.create_run(&id, &events)?;
    output::note(&format!("run {id} imported from {shown}: {} events (see `tutti status {id}`)", events.len()));
    Ok(EXIT_OK)
}

/// Read and check an export file: a header line, then events numbered 1..=n beginning with `run_created`.
fn parse(reader: Box<dyn BufRead>, shown: &str) -> Result<(Header, Vec<NewEvent>)> {
    let bad = |line: usize, what: String| UserError::new(format!("{shown}:{line}: {what}"));
    let mut lines = reader.lines().enumerate();
    let (_, first) = lines.next().ok_or_else(|| bad(1, "empty file: not a `tutti export` file".into()))?;
    let header: Header = serde_json::from_str(&first.with_context(|| format!("cannot read {shown}"))?)
        .map_err(|e| bad(1, format!("not a `tutti export` header: {e}")))?;
    if header.tutti_export != FORMAT {
        return Err(bad(
            1,
            format!("export format {} is not supported (this build reads {FORMAT})", header.tutti_export),
        )
        .into());
    }
    let mut events = Vec::new();
    for (index, line) in lines {
        let line = line.with_context(|| format!("cannot read {shown}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record =
            serde_json::from_str(&line).map_err(|e| bad(index + 1, format!("not a journal event: {e}")))?;
        let expected = events.len() as u64 + 1;
        if record.seq != expected {
            return Err(bad(index + 1, format!("event number {} where {expected} was expected", record.seq)).into());
        }
        if expected == 1 && !matches!(record.event, Event::RunCreated { .. }) {
            return Err(bad(index + 1, "the first event must be run_created".into()).into());
        }
        events.push(NewEvent { ts_ms: record.ts_ms, event: record.event });
    }
    if events.len() as u64 != header.run.events {
        return Err(bad(
            1,
            format!(
                "the header announces {} events but the file holds {} (truncated?)",
                header.run.events,
                events.len()
            ),
        )
        .into());
    }
    Ok((header, events))
}
