//! Offered tools and the one mapping table from the script's generic tool names (`write_file`, `shell`) to
//! the tools each CLI offers, with their parameter names read from the offered JSON schemas. Also finds the
//! agent's working directory in the prompt, for tools that want absolute paths.

use serde_json::{Map, Value, json};

use super::wire::{Call, Conversation, Input, strings};

/// A tool a request offers.
#[derive(Debug, Clone, Default)]
pub(super) struct Tool {
    pub(super) name: String,
    /// Codex's MCP tools come grouped under a namespace (`mcp__echo`).
    pub(super) namespace: Option<String>,
    /// An OpenAI Responses custom tool, called with free text instead of JSON (codex's `apply_patch`).
    pub(super) custom: bool,
    /// The `properties` of its parameters' JSON schema.
    pub(super) params: Map<String, Value>,
}

impl Tool {
    /// A function tool named `name` whose parameters follow `schema`.
    pub(super) fn function(name: &str, schema: &Value) -> Tool {
        let params = schema["properties"].as_object().cloned().unwrap_or_default();
        Tool { name: name.to_string(), params, ..Tool::default() }
    }

    /// `name`, or `namespace/name`.
    pub(super) fn label(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }

    fn has(&self, param: &str) -> bool {
        self.params.contains_key(param)
    }

    /// The first of `candidates` the schema has, else the first candidate.
    fn param(&self, candidates: &[&'static str]) -> &'static str {
        candidates.iter().copied().find(|p| self.has(p)).unwrap_or(candidates[0])
    }
}

/// How a generic tool is carried out by one concrete tool.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A file-writing tool: path and content parameters.
    File(&'static str),
    /// Codex's `apply_patch`: an `*** Add File` patch.
    Patch(&'static str),
    /// A shell tool: one command parameter, a string or an argv array.
    Shell(&'static str),
}

impl Target {
    fn tool(self) -> &'static str {
        match self {
            Target::File(tool) | Target::Patch(tool) | Target::Shell(tool) => tool,
        }
    }
}

/// The mapping table: a generic name, with arguments `write_file {path, content}` or `shell {command}`, and the
/// concrete tools that can do it, most preferred first (the first offered one is called). Claude: `Write`,
/// `Bash`; codex: `apply_patch`, `exec_command`, `shell`; gemini: `write_file`, `run_shell_command`; pi and
/// opencode: `write`, `bash`.
const TABLE: &[(&str, &[Target])] = &[
    (
        "write_file",
        &[
            Target::File("Write"),
            Target::File("write_file"),
            Target::File("write"),
            Target::Patch("apply_patch"),
            Target::Shell("exec_command"),
            Target::Shell("shell"),
        ],
    ),
    (
        "shell",
        &[
            Target::Shell("Bash"),
            Target::Shell("run_shell_command"),
            Target::Shell("bash"),
            Target::Shell("exec_command"),
            Target::Shell("shell"),
        ],
    ),
];

/// Parameter names, most common first: claude and gemini say `file_path`, opencode `filePath`, pi `path`.
const PATH_PARAMS: &[&str] = &["file_path", "filePath", "path", "absolute_path"];
const CONTENT_PARAMS: &[&str] = &["content", "contents", "text"];
/// Codex's `exec_command` says `cmd`; everyone else `command`.
const COMMAND_PARAMS: &[&str] = &["cmd", "command"];
const PATCH_PARAMS: &[&str] = &["input", "patch"];

/// The call that carries out the scripted `name(args)` with what `conversation` offers, or a complaint naming
/// the offered tools when nothing fits.
pub(super) fn call(name: &str, args: &Value, conversation: &Conversation) -> Result<Call, String> {
    let targets = TABLE.iter().find(|(generic, _)| *generic == name).map_or(&[][..], |(_, targets)| targets);
    for &target in targets {
        if let Some(tool) = conversation.tools.iter().find(|t| t.namespace.is_none() && t.name == target.tool()) {
            return carry_out(target, tool, args, conversation.cwd.as_deref());
        }
    }
    if let Some(tool) = find_named(&conversation.tools, name) {
        let input = if tool.custom {
            Input::Custom(args.as_str().unwrap_or_default().into())
        } else {
            Input::Json(args.clone())
        };
        return Ok(Call { name: tool.name.clone(), namespace: tool.namespace.clone(), input });
    }
    let offered: Vec<String> = conversation.tools.iter().map(Tool::label).collect();
    Err(format!("mock: no offered tool fits `{name}`; offered: [{}]", offered.join(", ")))
}

/// Whether a result of the tool `called` counts as a result of the scripted `name`.
pub(super) fn is_called_as(name: &str, called: &str) -> bool {
    called == name
        || TABLE.iter().any(|(generic, targets)| *generic == name && targets.iter().any(|t| t.tool() == called))
        || mcp_suffix(called, name)
}

/// An offered tool by its own name, or an MCP tool by its bare name.
fn find_named<'a>(tools: &'a [Tool], name: &str) -> Option<&'a Tool> {
    tools.iter().find(|t| t.name == name).or_else(|| tools.iter().find(|t| mcp_suffix(&t.name, name)))
}

/// `mcp__echo__echo` (claude), `mcp_echo_echo` (gemini), `echo_echo` (opencode) are the MCP tool `echo`.
fn mcp_suffix(full: &str, bare: &str) -> bool {
    full.strip_suffix(bare).is_some_and(|prefix| prefix.ends_with('_'))
}

fn carry_out(target: Target, tool: &Tool, args: &Value, cwd: Option<&str>) -> Result<Call, String> {
    let text = |key: &str| {
        args[key].as_str().map(str::to_string).ok_or_else(|| format!("mock: `{}` needs a string `{key}`", tool.name))
    };
    let input = match target {
        Target::File(_) => {
            let path = absolute(&text("path")?, cwd);
            Input::Json(json!({ tool.param(PATH_PARAMS): path, tool.param(CONTENT_PARAMS): text("content")? }))
        }
        Target::Patch(_) => {
            let patch = add_file_patch(&text("path")?, &text("content")?);
            if tool.custom { Input::Custom(patch) } else { Input::Json(json!({ tool.param(PATCH_PARAMS): patch })) }
        }
        Target::Shell(_) => {
            let script = match args.get("command") {
                Some(_) => text("command")?,
                None => format!("printf '%s' {} > {}", quote(&text("content")?), quote(&text("path")?)),
            };
            shell_input(tool, script)
        }
    };
    Ok(Call { name: tool.name.clone(), namespace: None, input })
}

fn shell_input(tool: &Tool, script: String) -> Input {
    let param = tool.param(COMMAND_PARAMS);
    let command = if tool.params[param]["type"] == "array" { json!(["bash", "-lc", script]) } else { json!(script) };
    let mut args = json!({ param: command });
    // opencode's `bash` requires a description of the command.
    if tool.has("description") {
        args["description"] = json!("run a command for the mock model");
    }
    Input::Json(args)
}

fn add_file_patch(path: &str, content: &str) -> String {
    let lines: String = content.lines().map(|line| format!("+{line}\n")).collect();
    format!("*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n")
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn absolute(path: &str, cwd: Option<&str>) -> String {
    match cwd {
        Some(cwd) if !path.starts_with('/') => {
            format!("{}/{}", cwd.trim_end_matches('/'), path.trim_start_matches("./"))
        }
        _ => path.to_string(),
    }
}

/// The working directory the prompt states: codex's `<cwd>…</cwd>`, or "working directory: …" (claude,
/// opencode, pi), or "working in the directory: …" (gemini); only an absolute path counts.
pub(super) fn find_cwd(body: &Value) -> Option<String> {
    strings(body).find_map(cwd_in)
}

fn cwd_in(text: &str) -> Option<String> {
    if let Some((_, rest)) = text.split_once("<cwd>")
        && let Some((cwd, _)) = rest.split_once("</cwd>")
        && let Some(cwd) = absolute_path(cwd)
    {
        return Some(cwd);
    }
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    ["working directory: ", "working in the directory: "].iter().find_map(|marker| {
        let at = lower.find(marker)? + marker.len();
        absolute_path(text[at..].lines().next()?)
    })
}

fn absolute_path(text: &str) -> Option<String> {
    let path = text.trim().trim_matches('`');
    path.starts_with('/').then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(tools: Vec<Tool>, cwd: Option<&str>) -> Conversation {
        Conversation { tools, cwd: cwd.map(str::to_string), ..Conversation::default() }
    }

    fn tool(name: &str, params: &[&str]) -> Tool {
        let properties: Map<String, Value> =
            params.iter().map(|p| (p.to_string(), json!({"type": "string"}))).collect();
        Tool::function(name, &json!({ "properties": properties }))
    }

    fn write_hello() -> Value {
        json!({"path": "hello.txt", "content": "hi there\n"})
    }

    #[test]
    fn write_file_maps_onto_each_clis_own_write_tool() {
        let cases = [
            (vec![tool("Bash", &["command"]), tool("Write", &["file_path", "content"])], "Write", "file_path"),
            (
                vec![tool("run_shell_command", &["command"]), tool("write_file", &["file_path", "content"])],
                "write_file",
                "file_path",
            ),
            (vec![tool("bash", &["command"]), tool("write", &["path", "content"])], "write", "path"),
            (
                vec![tool("bash", &["command", "description"]), tool("write", &["filePath", "content"])],
                "write",
                "filePath",
            ),
        ];
        for (tools, name, path_param) in cases {
            let call = call("write_file", &write_hello(), &offering(tools, Some("/work/tree"))).unwrap();
            assert_eq!(call.name, name);
            assert_eq!(call.input.json(), json!({ path_param: "/work/tree/hello.txt", "content": "hi there\n" }));
        }
    }

    #[test]
    fn codex_writes_by_apply_patch_when_offered_and_by_exec_command_otherwise() {
        let patch = Tool { name: "apply_patch".into(), custom: true, ..Tool::default() };
        let tools = vec![tool("exec_command", &["cmd", "workdir"]), patch];
        let call_ = call("write_file", &write_hello(), &offering(tools, None)).unwrap();
        assert_eq!(call_.name, "apply_patch");
        assert_eq!(
            call_.input,
            Input::Custom("*** Begin Patch\n*** Add File: hello.txt\n+hi there\n*** End Patch\n".into())
        );

        let call_ = call("write_file", &write_hello(), &offering(vec![tool("exec_command", &["cmd"])], None)).unwrap();
        assert_eq!(call_.input.json(), json!({"cmd": "printf '%s' 'hi there\n' > 'hello.txt'"}));
    }

    #[test]
    fn shell_fills_an_argv_parameter_and_a_required_description() {
        let argv = Tool::function("shell", &json!({"properties": {"command": {"type": "array"}}}));
        let call_ = call("shell", &json!({"command": "ls"}), &offering(vec![argv], None)).unwrap();
        assert_eq!(call_.input.json(), json!({"command": ["bash", "-lc", "ls"]}));

        let opencode = tool("bash", &["command", "description"]);
        let call_ = call("shell", &json!({"command": "ls"}), &offering(vec![opencode], None)).unwrap();
        assert_eq!(call_.input.json()["command"], "ls");
        assert!(call_.input.json()["description"].is_string());
    }

    #[test]
    fn other_names_pass_through_exactly_or_as_an_mcp_suffix() {
        let tools = vec![tool("mcp__echo__echo", &["text"]), tool("Read", &["file_path"])];
        let call_ = call("echo", &json!({"text": "x"}), &offering(tools.clone(), None)).unwrap();
        assert_eq!((call_.name.as_str(), call_.input.json()), ("mcp__echo__echo", json!({"text": "x"})));
        assert_eq!(call("Read", &json!({}), &offering(tools.clone(), None)).unwrap().name, "Read");

        let complaint = call("write_file", &write_hello(), &offering(tools, None)).unwrap_err();
        assert!(complaint.contains("mcp__echo__echo, Read"), "{complaint}");
        assert!(is_called_as("write_file", "exec_command") && is_called_as("echo", "mcp_echo_echo"));
        assert!(!is_called_as("write_file", "Read") && !is_called_as("echo", "mcp_echoecho"));
    }

    #[test]
    fn the_working_directory_is_found_as_each_cli_states_it() {
        let cases = [
            ("<environment_context>\n  <cwd>/a/b</cwd>\n</environment_context>", Some("/a/b")),
            ("Here is useful information\n<env>\nPrimary working directory: /c/d\nIs a git repo: no", Some("/c/d")),
            ("Current working directory: /e", Some("/e")),
            ("I'm currently working in the directory: /f/g\nHere is", Some("/f/g")),
            ("the working directory: is where you are", None),
        ];
        for (text, cwd) in cases {
            assert_eq!(find_cwd(&json!({"system": text})).as_deref(), cwd, "{text}");
        }
    }
}
