//! Journal growth is bounded per attempt, however long a turn runs and however much its CLI prints: at most
//! 200 progress notes, the last MiB of its event stream and the last 8 KiB of its stderr. A fake `claude`
//! streams 5,000 events (2,500 tool calls, 2,500 lines of narration, about 2 MB) and 40 KB of stderr.

use std::path::Path;

use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const CHATTY_CLAUDE: &str = r#"#!/bin/sh
pad=$(printf '%0300d' 0)
i=0
while [ $i -lt 2500 ]; do
  printf '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Read","input":{"file_path":"src/f%d.rs","pad":"%s"}}]}}\n' $i $pad
  printf '{"type":"assistant","message":{"content":[{"type":"text","text":"step %d %s"}]}}\n' $i $pad
  i=$((i+1))
done
j=0
while [ $j -lt 130 ]; do echo "warning $j $pad" >&2; j=$((j+1)); done
printf '{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1","total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5}}\n'
"#;

fn size_of_journal(root: &Path) -> u64 {
    ["tutti.db", "tutti.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(root.join(".tutti").join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_turn_that_streams_5000_events_adds_at_most_the_caps_to_the_journal() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new(TUTTI);
    let cli = project.write("chatty-claude", CHATTY_CLAUDE);
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    project.write(
        "tutti.toml",
        format!("[defaults]\nharness = \"claude\"\n[harness.claude]\nbinary = {:?}\n", cli.display().to_string()),
    );
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "agent", title: "long turn", agent: { prompt: "work a long time" } }));
export async function process(inputs, ctx) { return await ctx.task(t, {}); }
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let events = project.events(&out.run_id());
    let progress = of_kind(&events, "effect_progress");
    assert_eq!(progress.len(), 200, "the cap of progress notes per attempt: {}", show(&events));
    assert!(events.len() <= 200 + 20, "{} events in all", events.len());
    let transcript = of_kind(&events, "effect_transcript");
    assert_eq!(transcript.len(), 1, "{}", show(&events));
    let stdout = &transcript[0]["event"]["stdout"];
    let kept = stdout["blob"]["size"].as_u64().unwrap_or_else(|| stdout["inline"].to_string().len() as u64);
    // The stream was about 2 MB; its last MiB is kept (a JSON string: quotes and escapes add a little).
    assert!((1_000_000..=(1 << 20) + (64 << 10)).contains(&kept), "transcript blob of {kept} bytes");
    let stderr = transcript[0]["event"]["stderr"].as_str().unwrap_or("");
    assert!(stderr.len() <= 8 << 10 && stderr.len() > 8_000, "stderr tail of {} bytes", stderr.len());
    assert!(stderr.trim_end().ends_with(&format!("warning 129 {}", "0".repeat(300))), "the tail is kept");
    // Everything the run journaled, on disk: the transcript plus a bounded rest.
    let on_disk = size_of_journal(project.root());
    assert!(on_disk < 2 << 20, "the journal holds {on_disk} bytes after a 2 MB stream");
}
