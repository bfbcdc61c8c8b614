//! The journal as files on disk: where it lives (tutti.db alone after a run, `.tutti/` private and ignored by
//! git), what commands do outside a project, export and import, and what every command does with a damaged
//! journal: say so with exit 2 and start nothing, or give the right answer, and never write into it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tutti_testkit::{Output, Project};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// Three rounds of four parallel shell tasks; each task notes its start in `started.log`. The output holds a
/// value large enough to be stored out of line.
const PROCESS: &str = r#"
import { defineTask } from "tutti";
const step = defineTask("step", (a) => ({
  kind: "shell",
  title: `step ${a.r}.${a.i}`,
  shell: { command: `echo "$TUTTI_EFFECT_ID" >> started.log; echo ${a.r}${a.i}` },
}));
export async function process(inputs, ctx) {
  const rounds = [];
  for (let r = 0; r < 3; r++) {
    const outs = await ctx.parallel.all([0, 1, 2, 3].map((i) => () => ctx.task(step, { r, i })));
    rounds.push(outs.map((o) => o.stdout.trim()).join(","));
  }
  return { rounds, big: "x".repeat(6000) };
}
"#;

fn project() -> Project {
    let project = Project::new(TUTTI);
    project.write("p.js", PROCESS);
    project
}

/// `tutti ARGS` without `--home`, in `dir`, as a person would type it there.
fn tutti_in(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(TUTTI).args(args).current_dir(dir).env_remove("TUTTI_HOME").output().expect("start tutti");
    Output {
        code: out.status.code().unwrap_or(128 + out.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn read_only_commands_outside_a_project_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["ls"][..], &["status"], &["events", "01X"], &["groups", "01X"], &["export", "01X"]] {
        let out = tutti_in(dir.path(), args);
        assert_eq!(out.code, 2, "tutti {args:?}:\n{out}");
        assert!(out.stderr.contains("no tutti project in"), "tutti {args:?} says why:\n{out}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "tutti {args:?} created {left:?}");
    }
    // A subfolder of a project is inside it.
    let project = project();
    assert_eq!(project.run(&["run", "p.js"]).code, 0);
    std::fs::create_dir(project.path("sub")).unwrap();
    let out = tutti_in(&project.path("sub"), &["ls", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(!project.path("sub/.tutti").exists());
}

#[test]
fn the_state_folder_is_private_and_git_ignores_it() {
    let project = project();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(project.root()).output().expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    assert_eq!(project.run(&["run", "p.js"]).code, 0);
    let mode = std::fs::metadata(project.path(".tutti")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, ".tutti/ must be private, is {mode:o}");
    let status = git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(!status.contains(".tutti"), "git sees the journal:\n{status}");
    assert!(status.contains("p.js"), "git status works here:\n{status}");
}

#[test]
fn after_a_run_tutti_db_alone_holds_it_and_export_import_reproduce_it_byte_for_byte() {
    let project = project();
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    assert_eq!(file_len(&project.path(".tutti/tutti.db-wal")), 0, "the log must be checkpointed into tutti.db");
    let events = project.run(&["events", &run, "--json"]);
    assert_eq!(events.code, 0, "{events}");
    assert!(events.stdout.contains("{\"blob\""), "the big output should be out of line:\n{}", events.stdout);

    // A copy of tutti.db alone, in a fresh project.
    let copy = Project::new(TUTTI);
    std::fs::create_dir(copy.path(".tutti")).unwrap();
    std::fs::copy(project.db(), copy.db()).unwrap();
    let listed = copy.run(&["ls", "--json"]);
    assert_eq!(listed.json()["id"], run.as_str(), "{listed}");
    assert_eq!(copy.run(&["status", &run, "--json"]).json()["status"], "completed");
    assert_eq!(copy.run(&["events", &run, "--json"]).stdout, events.stdout);

    // Export, then import into a folder that is not a project yet.
    let file = project.path("run.ndjson");
    let exported = project.run(&["export", &run, "-o", file.to_str().unwrap()]);
    assert_eq!(exported.code, 0, "{exported}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("{\"blob\""), "blobs must be inlined in an export");
    assert!(text.contains(&"x".repeat(6000)));
    let fresh = Project::new(TUTTI);
    let imported = fresh.run(&["import", file.to_str().unwrap()]);
    assert_eq!(imported.code, 0, "{imported}");
    assert_eq!(fresh.run(&["events", &run, "--json"]).stdout, events.stdout, "events must match byte for byte");
    let again = fresh.run(&["import", file.to_str().unwrap()]);
    assert_eq!(again.code, 2, "a run is imported once:\n{again}");

    // A damaged export file is refused, naming the line.
    let cut: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
    let partial = project.write("partial.ndjson", cut);
    let refused = Project::new(TUTTI).run(&["import", partial.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("partial.ndjson") && refused.stderr.contains("truncated"), "{refused}");
}

/// A project whose run was killed (SIGKILL) after a few commits, so that a resume has work to start; the
/// journal is then closed cleanly by a read, which moves it into tutti.db.
fn interrupted_run() -> (Project, String) {
    let project = project();
    let out = project.tutti().args(["run", "p.js"]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", "3").output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "the fault hook kills the driver");
    let run = tutti_testkit::run_id_from(&String::from_utf8_lossy(&out.stderr)).expect("run id on stderr");
    // Tasks the dead driver started may still be finishing.
    std::thread::sleep(Duration::from_millis(300));
    (project, run)
}

/// Live processes started for `run`, found by the `TUTTI_RUN_ID` in their environment (read from `/proc`).
fn processes_of(run: &str) -> Vec<u32> {
    let wanted = format!("TUTTI_RUN_ID={run}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect()
}

fn started(project: &Project) -> usize {
    project.read("started.log").unwrap_or_default().lines().count()
}

/// Every command on a damaged journal: exit 2 naming the file and saying it is damaged, or the answer the
/// undamaged journal gives. A resume refused starts nothing; a journal found damaged is never written.
/// Returns how many of the commands refused.
fn check_every_command(project: &Project, run: &str, good: &Answers, what: &str) -> usize {
    let db = std::fs::read(project.db()).unwrap();
    let before = started(project);
    let mut refused = 0;
    for (args, expected) in good.commands(run) {
        let out = run_strings(project, &args);
        if out.code == 2 {
            assert!(
                out.stderr.contains("tutti.db") && out.stderr.contains("is damaged"),
                "{what}: tutti {args:?} must name the file and say it is damaged:\n{out}"
            );
            refused += 1;
        } else {
            assert_eq!(out.code, 0, "{what}: tutti {args:?}:\n{out}");
            assert_eq!(out.stdout, expected, "{what}: tutti {args:?} answered wrongly");
        }
    }
    let resumed = project.run(&["resume", run]);
    if resumed.code == 2 {
        assert!(resumed.stderr.contains("is damaged"), "{what}: resume:\n{resumed}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(started(project), before, "{what}: a refused resume started tasks");
        assert_eq!(processes_of(run), Vec::<u32>::new(), "{what}: processes of the run are alive");
        refused += 1;
    } else {
        assert_eq!(resumed.code, 0, "{what}: resume:\n{resumed}");
        assert_eq!(resumed.stdout, good.output, "{what}: resume finished with another output");
    }
    if refused == good.commands(run).len() + 1 {
        assert_eq!(std::fs::read(project.db()).unwrap(), db, "{what}: a damaged journal was written");
    }
    refused
}

/// What the undamaged journal answers.
struct Answers {
    ls: String,
    status: String,
    events: String,
    groups: String,
    output: String,
}

impl Answers {
    fn of(project: &Project, run: &str) -> Self {
        let get = |args: &[&str]| {
            let out = project.run(args);
            assert_eq!(out.code, 0, "tutti {args:?}:\n{out}");
            out.stdout
        };
        let answers = Self {
            ls: get(&["ls", "--json"]),
            status: get(&["status", run, "--json"]),
            events: get(&["events", run, "--json"]),
            groups: get(&["groups", run, "--json"]),
            output: String::new(),
        };
        // The output a resume of the undamaged journal gives, from a copy.
        let copy = Project::new(TUTTI);
        copy.write("p.js", PROCESS);
        std::fs::create_dir(copy.path(".tutti")).unwrap();
        std::fs::copy(project.db(), copy.db()).unwrap();
        let resumed = copy.run(&["resume", run]);
        assert_eq!(resumed.code, 0, "{resumed}");
        Self { output: resumed.stdout, ..answers }
    }

    fn commands(&self, run: &str) -> Vec<(Vec<String>, String)> {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            (args(&["ls", "--json"]), self.ls.clone()),
            (args(&["status", run, "--json"]), self.status.clone()),
            (args(&["events", run, "--json"]), self.events.clone()),
            (args(&["groups", run, "--json"]), self.groups.clone()),
        ]
    }
}

fn run_strings(project: &Project, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    project.run(&args)
}

/// Copy `from`'s project files (process and journal, no log) into a fresh project.
fn copy_of(from: &Project) -> Project {
    let copy = Project::new(TUTTI);
    copy.write("p.js", PROCESS);
    std::fs::create_dir(copy.path(".tutti")).unwrap();
    std::fs::copy(from.db(), copy.db()).unwrap();
    if let Some(log) = from.read("started.log") {
        copy.write("started.log", log);
    }
    copy
}

#[test]
fn a_truncated_journal_stops_every_command() {
    let (project, run) = interrupted_run();
    let good = Answers::of(&project, &run);
    let copy = copy_of(&project);
    let len = file_len(&copy.db());
    std::fs::OpenOptions::new().write(true).open(copy.db()).unwrap().set_len(len / 2).unwrap();
    assert_eq!(check_every_command(&copy, &run, &good, "truncated to half"), 5);
    let out = copy.run(&["run", "p.js"]);
    assert_eq!(out.code, 2, "a new run must not be written into a damaged journal:\n{out}");
}

#[test]
fn random_bytes_at_20_offsets_stop_every_command_or_change_nothing() {
    let (project, run) = interrupted_run();
    let good = Answers::of(&project, &run);
    // Offsets in bytes that hold something: most of a small journal's pages are empty space, and damage
    // there changes nothing.
    let used: Vec<usize> = std::fs::read(project.db())
        .unwrap()
        .iter()
        .enumerate()
        .skip(100)
        .filter(|(_, b)| **b != 0)
        .map(|(i, _)| i)
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut detected = 0;
    for i in 0..20u64 {
        let copy = copy_of(&project);
        // Spread over the used bytes: one offset in each twentieth of them.
        let share = used.len() as u64 / 20;
        let offset = used[(i * share + next() % share) as usize];
        let mut bytes = std::fs::read(copy.db()).unwrap();
        for k in 0..16 {
            if let Some(b) = bytes.get_mut(offset + k) {
                *b = next() as u8;
            }
        }
        std::fs::write(copy.db(), &bytes).unwrap();
        let refused = check_every_command(&copy, &run, &good, &format!("16 random bytes at offset {offset}"));
        detected += usize::from(refused > 0);
    }
    // Damage to used bytes is found by the integrity check (20 of 20 on this journal); what slips past it
    // must still give the right answers, which check_every_command asserts.
    assert!(detected >= 15, "most damage must be detected, only {detected} of 20 were");
}

#[test]
fn a_log_deleted_after_a_crash_stops_every_command_until_the_loss_is_accepted() {
    let project = project();
    let out = project.tutti().args(["run", "p.js"]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", "4").output().unwrap();
    assert_eq!(out.status.signal(), Some(9));
    let run = tutti_testkit::run_id_from(&String::from_utf8_lossy(&out.stderr)).expect("run id");
    std::thread::sleep(Duration::from_millis(300));
    let wal = project.path(".tutti/tutti.db-wal");
    assert!(file_len(&wal) > 0, "the crash left commits in the log");
    std::fs::remove_file(&wal).unwrap();
    let before = started(&project);
    let db = std::fs::read(project.db()).unwrap();
    for args in [&["ls"][..], &["status", &run], &["events", &run], &["resume", &run], &["run", "p.js"]] {
        let out = project.run(args);
        assert_eq!(out.code, 2, "tutti {args:?}:\n{out}");
        assert!(out.stderr.contains("tutti.db-wal is missing"), "tutti {args:?}:\n{out}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(started(&project), before, "nothing may start");
    assert_eq!(processes_of(&run), Vec::<u32>::new(), "no process of the run may be alive");
    assert_eq!(std::fs::read(project.db()).unwrap(), db, "nothing may be written");
    // Accepting the loss, as the message says.
    std::fs::remove_file(project.path(".tutti/tutti.db-shm")).unwrap();
    let out = project.run(&["ls"]);
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn a_sealed_journal_is_trusted_by_commands_but_doctor_checks_it_whole() {
    let project = project();
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let sealed = project.path(".tutti/tutti.db-sealed");
    assert!(sealed.exists(), "a clean end seals the journal");
    let doctor = project.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 0, "{doctor}");
    let report = doctor.json();
    assert_eq!(report["journal"]["damage"], serde_json::Value::Null, "{doctor}");
    assert_eq!(report["journal"]["runs"], 1, "{doctor}");

    // Break one event's JSON in place, keeping the file's size, inode and time: the seal still holds, so
    // `ls` answers without reading every event, and `doctor` still finds the damage.
    let db = project.db();
    let modified = std::fs::metadata(&db).unwrap().modified().unwrap();
    let bytes = std::fs::read(&db).unwrap();
    // The tasks' titles inside the events' JSON (some copies may sit in free pages): a control character
    // there makes a body invalid JSON.
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    for (at, _) in bytes.windows(5).enumerate().filter(|(_, w)| *w == b"step ") {
        std::os::unix::fs::FileExt::write_all_at(&file, b"\x01", at as u64).unwrap();
    }
    file.set_modified(modified).unwrap();
    drop(file);
    assert_eq!(project.run(&["ls"]).code, 0, "the sealed journal is not read whole by ls");
    let doctor = project.run(&["doctor"]);
    assert_eq!(doctor.code, 2, "{doctor}");
    assert!(doctor.stdout.contains("DAMAGED") && doctor.stdout.contains("tutti.db"), "{doctor}");

    // Anything that changes the file's time breaks the seal: every command checks the whole journal again.
    std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let ls = project.run(&["ls"]);
    assert_eq!(ls.code, 2, "{ls}");
    assert!(ls.stderr.contains("is damaged"), "{ls}");
}
