//! The mock model server's HTTP/1.1 plumbing, std only: reading one request (Content-Length or chunked body,
//! `Expect: 100-continue`), and writing a JSON response or a chunked SSE stream. Nothing here knows any API.

use std::io::{self, BufRead, Write};

use serde_json::Value;

use super::wire::Event;

/// A request body larger than this is refused; real CLI requests are well under 1 MB.
const MAX_BODY: usize = 64 << 20;

pub(super) struct HttpRequest {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    /// Names lowercased.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl HttpRequest {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Read one request; `writer` is the same connection, for the `100 Continue` interim response.
pub(super) fn read_request(reader: &mut impl BufRead, writer: &mut impl Write) -> io::Result<HttpRequest> {
    let line = read_line(reader)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            request.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if request.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    request.body = if request.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else {
        let length = request.header("content-length").map_or(Ok(0), str::parse).map_err(invalid)?;
        if length > MAX_BODY {
            return Err(invalid(format!("body of {length} bytes")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(request)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(invalid)?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

/// One line without its CRLF; an error at end of input.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The whole response in one write, so a client never sees half of it.
pub(super) fn write_json(writer: &mut impl Write, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    let (reason, length) = (reason(status), body.len());
    let head = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n");
    writer.write_all(format!("{head}connection: close\r\n\r\n{body}").as_bytes())?;
    writer.flush()
}

pub(super) fn write_sse_head(writer: &mut impl Write) -> io::Result<()> {
    writer.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    )?;
    writer.flush()
}

/// One SSE event as one HTTP chunk in one write, flushed, so a client sees the whole event at once.
pub(super) fn write_event(writer: &mut impl Write, event: &Event) -> io::Result<()> {
    let text = event.to_string();
    writer.write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())?;
    writer.flush()
}

pub(super) fn write_sse_end(writer: &mut impl Write) -> io::Result<()> {
    writer.write_all(b"0\r\n\r\n")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}
