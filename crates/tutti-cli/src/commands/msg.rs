//! `tutti msg send|inbox`: how an agent inside a running effect talks to the orchestrator. Its identity comes
//! from the environment tutti gave the effect, proven by a per-attempt token; a forged token, or one of an
//! attempt that has ended, is refused.

use anyhow::Result;
use serde_json::{Value, json};
use tutti_engine::identity::message_token;
use tutti_journal::{Command, EffectId, Event, Record, Store};

use crate::args::MsgCmd;
use crate::commands::open_store;
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

/// The effect this process runs inside, from its environment.
pub(crate) struct Caller {
    run: String,
    effect: String,
    attempt: u32,
    token: String,
}

pub(crate) fn caller() -> Result<Caller> {
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
    match action {
        MsgCmd::Send { to, text, json } => {
            let body = if json {
                serde_json::from_str(&text)
                    .map_err(|e| UserError::new(format!("--json: the message is not JSON: {e}")))?
            } else {
                Value::String(text)
            };
            send(store.as_mut(), &me, to, body)?;
            output::note("message queued for the run's driver");
        }
        MsgCmd::Progress { text } => progress(store.as_mut(), &me, text)?,
        MsgCmd::Inbox { json } => {
            for m in inbox(store.as_ref(), &me)? {
                if json {
                    output::json_line(&m);
                } else {
                    let body = &m["body"];
                    let text = body.as_str().map(String::from).unwrap_or_else(|| body.to_string());
                    output::data(&format!("{}: {text}", m["from"].as_str().unwrap_or("")));
                }
            }
        }
    }
    Ok(EXIT_OK)
}

/// Queue a message from the caller's effect for the run's driver.
pub(crate) fn send(store: &mut dyn Store, me: &Caller, to: String, body: Value) -> Result<()> {
    authenticate(me, &store.read(&me.run, 0)?)?;
    let command =
        Command::Message { effect: me.effect.clone().into(), attempt: me.attempt, token: me.token.clone(), to, body };
    store.post_command(&me.run, &command)?;
    Ok(())
}

/// Queue a progress note from the caller's effect.
pub(crate) fn progress(store: &mut dyn Store, me: &Caller, message: String) -> Result<()> {
    authenticate(me, &store.read(&me.run, 0)?)?;
    let command =
        Command::Progress { effect: me.effect.clone().into(), attempt: me.attempt, token: me.token.clone(), message };
    store.post_command(&me.run, &command)?;
    Ok(())
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

/// The messages addressed to the caller's member (or effect), oldest first: `{ from, body, ts_ms }`.
pub(crate) fn inbox(store: &dyn Store, me: &Caller) -> Result<Vec<Value>> {
    let records = store.read(&me.run, 0)?;
    authenticate(me, &records)?;
    let address = EffectId::from(me.effect.as_str()).address();
    let mut messages = Vec::new();
    for r in &records {
        let Event::MessageSent { from, to, body, .. } = &r.event else { continue };
        if *to == address {
            messages.push(json!({ "from": from, "body": store.load(body)?, "ts_ms": r.ts_ms }));
        }
    }
    Ok(messages)
}
