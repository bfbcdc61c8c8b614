//! A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol through
//! `--remote-debugging-pipe`: commands go to the browser's fd 3 and replies come from its fd 4, one JSON
//! message per NUL byte. No WebSocket, no download, no driver binary. Enough for the dashboard test: open a
//! page, evaluate JavaScript in it, wait for a condition, take a screenshot.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one protocol command may take.
const REPLY_WITHIN: Duration = Duration::from_secs(30);

/// The Chromium binary: `TUTTI_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("TUTTI_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// A running browser with one attached page.
pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    replies: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
}

impl Browser {
    /// Start headless Chromium with its profile in `profile` (a fresh temp dir).
    pub fn launch(profile: &Path) -> Result<Browser, String> {
        let binary = chromium_path();
        if !binary.exists() {
            return Err(format!("{} not found: install Debian's chromium (.ci/run does)", binary.display()));
        }
        let (their_commands, commands) = std::io::pipe().map_err(|e| e.to_string())?;
        let (replies_read, their_replies) = std::io::pipe().map_err(|e| e.to_string())?;
        let (read_fd, write_fd) = (OwnedFd::from(their_commands), OwnedFd::from(their_replies));
        let (r, w) = (read_fd.as_raw_fd(), write_fd.as_raw_fd());
        let mut command = Command::new(&binary);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
            .args(["--remote-debugging-pipe", "--window-size=1400,1000", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. Both ends are first moved above fd 9 so
        // that placing one at 3 cannot overwrite the other.
        unsafe {
            command.pre_exec(move || {
                let (r2, w2) = (libc::fcntl(r, libc::F_DUPFD, 10), libc::fcntl(w, libc::F_DUPFD, 10));
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        drop((read_fd, write_fd));
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies_read);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&message)
                    && v.get("id").is_some()
                    && tx.send(v).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        Ok(Browser { child, commands, replies, next_id: 0, session: None })
    }

    /// Send one protocol command (to the attached page unless it is a browser command) and wait for its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session
            && !method.starts_with("Target.")
            && !method.starts_with("Browser.")
        {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).map_err(|e| format!("{method}: browser gone: {e}"))?;
        let deadline = Instant::now() + REPLY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = match self.replies.recv_timeout(left) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) => return Err(format!("{method}: no reply in {REPLY_WITHIN:?}")),
                Err(RecvTimeoutError::Disconnected) => return Err(format!("{method}: the browser exited")),
            };
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Open `url` in a new page and attach to it; later page commands go to it.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        let target = self.call("Target.createTarget", json!({ "url": url }))?;
        let attached =
            self.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))?;
        self.session = attached["sessionId"].as_str().map(String::from);
        self.call("Runtime.enable", json!({}))?;
        Ok(())
    }

    /// Evaluate `expression` in the page (promises are awaited) and return its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.call("Runtime.evaluate", params)?;
        if let Some(e) = result.get("exceptionDetails") {
            return Err(format!("`{expression}` threw: {}", e["exception"]["description"].as_str().unwrap_or("?")));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluate `expression` until it gives a truthy value, and return that value; an error names what was
    /// awaited and the last value seen.
    pub fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(expression)?;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("{what}: not seen within {within:?} (`{expression}` gave {value})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page as it is drawn now.
    pub fn screenshot(&mut self, to: &Path) -> Result<(), String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }))?;
        let png = decode_base64(shot["data"].as_str().unwrap_or(""))?;
        std::fs::write(to, png).map_err(|e| format!("cannot write {}: {e}", to.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: {:?}", c as char)),
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.trim_end_matches('=').as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Ok(&b"hello"[..]));
        assert_eq!(decode_base64("aGk=").as_deref(), Ok(&b"hi"[..]));
        assert_eq!(decode_base64("YWJj").as_deref(), Ok(&b"abc"[..]));
        assert!(decode_base64("a*b=").is_err());
    }
}
