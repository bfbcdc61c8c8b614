//! `tutti msg send|inbox`: how an agent inside a running effect talks to the orchestrator. Its identity comes
//! from the environment tutti gave the effect, proven by a per-attempt token; a forged token, or one of an
//! attempt that has ended, is refused.

use anyhow::Result;
use serde_json::{Value, json};
use tutti_engine::identity::{address_of, message_token};
use tutti_journal::{Command, Event, Record, Store};

use crate::args::MsgCmd;
use crate::commands::open_store;
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

/// The effect this process runs inside, from its environment.
struct Caller {
    run: String,
    effect: String,
    attempt: u32,
    token: String,
}

fn caller() -> Result<Caller> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| {
            UserError::new(format!("{name} is not set: `tutti msg` works inside an effect that tutti started"))
        })
    };
    let attempt = var("TUTTI_ATTEMPT")?;
    Ok(Caller {
        run: var("TUTTI_RUN_ID")?,
        effect: var("TUTTI_EFFECT_ID")?,
        attempt: attempt.parse().map_err(|_| UserError::new(format!("TUTTI_ATTEMPT is not a number: {attempt}")))?,
        token: var("TUTTI_MSG_TOKEN")?,
    })
}

pub(crate) fn msg(config: &Config, action: MsgCmd) -> Result<i32> {
    let me = caller()?;
    let mut store = open_store(config)?;
    let records = store.read(&me.run, 0)?;
    authenticate(&me, &records)?;
    match action {
        MsgCmd::Send { to, text, json } => {
            let body = if json {
                serde_json::from_str(&text).map_err(|e| UserError::new(format!("--json: the message is not JSON: {e}")))?
            } else {
                Value::String(text)
            };
            let command = Command::Message { effect: me.effect.clone(), attempt: me.attempt, token: me.token, to, body };
            store.post_command(&me.run, &command)?;
            output::note("message queued for the run's driver");
        }
        MsgCmd::Inbox { json } => inbox(store.as_ref(), &me, &records, json)?,
    }
    Ok(EXIT_OK)
}

/// The token must be this attempt's, and the attempt must still be the effect's live one.
fn authenticate(me: &Caller, records: &[Record]) -> Result<()> {
    let secret = records.first().and_then(|r| match &r.event {
        Event::RunCreated { options, .. } => options.get("msgSecret").and_then(Value::as_str).map(String::from),
        _ => None,
    });
    let secret = secret.unwrap_or_else(|| me.run.clone());
    if message_token(&secret, &me.run, &me.effect, me.attempt) != me.token {
        return Err(UserError::new(format!("refused: TUTTI_MSG_TOKEN is not the token of effect {}", me.effect)).into());
    }
    let mut live = false;
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, .. } if *effect == me.effect => live = true,
            Event::EffectStarted { effect, attempt, .. } | Event::EffectRedispatched { effect, attempt, .. }
                if *effect == me.effect && *attempt > me.attempt =>
            {
                live = false
            }
            Event::EffectResolved { effect, .. } | Event::EffectCancelled { effect, .. } if *effect == me.effect => {
                live = false
            }
            _ => {}
        }
    }
    if !live {
        return Err(UserError::new(format!("refused: attempt {} of effect {} has ended", me.attempt, me.effect)).into());
    }
    Ok(())
}

fn inbox(store: &dyn Store, me: &Caller, records: &[Record], as_json: bool) -> Result<()> {
    let address = address_of(&me.effect);
    for r in records {
        let Event::MessageSent { from, to, body, .. } = &r.event else { continue };
        if *to != address {
            continue;
        }
        let body = store.load(body)?;
        if as_json {
            output::json_line(&json!({ "from": from, "body": body, "ts_ms": r.ts_ms }));
        } else {
            let text = body.as_str().map(String::from).unwrap_or_else(|| body.to_string());
            output::data(&format!("{from}: {text}"));
        }
    }
    Ok(())
}
