//! A fault-injecting HTTP proxy for the tests: it sits between haul and the real registry on
//! its own 127.0.0.1 port and, on demand, cuts, stalls, corrupts, ignores `Range`, or answers
//! 5xx / 429 for blob requests. It also records every request and counts the body bytes it
//! passed on, so a test can prove what was (not) downloaded.
//!
//! One request per connection (`Connection: close` both ways) keeps it simple: no keep-alive
//! bookkeeping, and reqwest opens a new connection for the next request.
//!
//! A request body (a push's chunk) is read whole before it is passed on, as nginx does by
//! default (`proxy_request_buffering on`): a client that dies mid-body sends the registry
//! nothing of that request. Its bytes are counted either way.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What to do to the next matching blob responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass through untouched.
    None,
    /// Close the connection after this many body bytes of the response.
    CutAfter(u64),
    /// Send this many body bytes, then nothing more, holding the connection open.
    StallAfter(u64),
    /// Flip the byte at this body offset.
    FlipByteAt(u64),
    /// Strip the request's Range header, so the registry answers 200 with the whole blob.
    IgnoreRange,
    /// Answer with this status and no body.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Answer with this status, Content-Type and body instead of asking the registry.
    Respond {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Answer 307 to the same path on another host (`127.0.0.1:PORT`).
    RedirectTo(String),
    /// Read this many bytes of the request's body, then read nothing more, holding the
    /// connection open (a registry that stopped taking an upload).
    StallRequestAfter(u64),
}

/// A request seen by the proxy.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: bool,
    pub status: u16,
    /// Body bytes passed on to the client.
    pub body_bytes: u64,
    /// Request body bytes received from the client (all of them, or as many as came before
    /// it went away).
    pub request_bytes: u64,
}

/// Options of a proxy.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// Credentials the proxy adds when forwarding (as a storage host that authorizes by
    /// signed URL would), whatever the client sent.
    pub basic_auth: Option<(String, String)>,
}

struct Rule {
    path_contains: String,
    fault: Fault,
    /// How many more requests it applies to.
    remaining: u32,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    /// Connections that opened with a TLS ClientHello (refused).
    tls_attempts: u64,
}

pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    blob_bytes: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_with(upstream, ProxyOptions::default())
    }

    pub fn start_with(upstream: &str, options: ProxyOptions) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let blob_bytes = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        {
            let (state, stop, blob_bytes) = (state.clone(), stop.clone(), blob_bytes.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (state, upstream, blob_bytes, options) = (
                        state.clone(),
                        upstream.clone(),
                        blob_bytes.clone(),
                        options.clone(),
                    );
                    thread::spawn(move || {
                        let _ = serve(client, &upstream, &state, &blob_bytes, &options);
                    });
                }
            });
        }
        FaultProxy {
            port,
            state,
            stop,
            blob_bytes,
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry host in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests whose `METHOD path` contains
    /// `path_contains` (e.g. a blob's hex digest, "/blobs/", or "PATCH ").
    pub fn inject(&self, path_contains: &str, fault: Fault, times: u32) {
        self.state.lock().unwrap().rules.push(Rule {
            path_contains: path_contains.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        state.rules.clear();
        state.seen.clear();
        state.tls_attempts = 0;
        self.blob_bytes.store(0, Ordering::SeqCst);
    }

    /// Connections that opened with a TLS ClientHello since start or the last clear.
    pub fn tls_attempts(&self) -> u64 {
        self.state.lock().unwrap().tls_attempts
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests whose path contains `/blobs/`.
    pub fn blob_requests(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.path.contains("/blobs/"))
            .collect()
    }

    /// Body bytes of blob `digest` passed to clients since start or the last clear.
    pub fn bytes_of(&self, digest: &str) -> u64 {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with(digest))
            .map(|r| r.body_bytes)
            .sum()
    }

    /// Request body bytes received from clients (uploads) since start or the last clear.
    pub fn request_bytes(&self) -> u64 {
        self.requests().iter().map(|r| r.request_bytes).sum()
    }

    /// Blob body bytes passed to clients since start or the last clear.
    pub fn blob_bytes(&self) -> u64 {
        self.blob_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn take_fault(state: &Mutex<State>, path: &str) -> Fault {
    let mut state = state.lock().unwrap();
    for rule in &mut state.rules {
        if rule.remaining > 0 && path.contains(&rule.path_contains) {
            rule.remaining -= 1;
            return rule.fault.clone();
        }
    }
    Fault::None
}

fn serve(
    client: TcpStream,
    upstream: &str,
    state: &Mutex<State>,
    blob_bytes: &AtomicU64,
    options: &ProxyOptions,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A TLS ClientHello (haul tries HTTPS first on loopback): this is a plain HTTP server,
    // so refuse it at once, as a real one would, without recording a request.
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && first[0] == 0x16 {
        state.lock().unwrap().tls_attempts += 1;
        return Ok(());
    }
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let range = header("range");
    let authorization = header("authorization").is_some();
    // Rules match the path, or `METHOD path` (e.g. "PATCH " for every PATCH).
    let fault = take_fault(state, &format!("{method} {path}"));
    let mut record = Seen {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        authorization,
        status: 0,
        body_bytes: 0,
        request_bytes: 0,
    };
    let mut client = client;
    match fault {
        Fault::Status(code) => {
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            record.status = code;
            state.lock().unwrap().seen.push(record);
            return Ok(());
        }
        Fault::TooManyRequests { retry_after_secs } => {
            write!(
                client,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            record.status = 429;
            state.lock().unwrap().seen.push(record);
            return Ok(());
        }
        Fault::Respond {
            status,
            content_type,
            body,
        } => {
            write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            client.write_all(&body)?;
            record.status = status;
            record.body_bytes = body.len() as u64;
            state.lock().unwrap().seen.push(record);
            return Ok(());
        }
        Fault::RedirectTo(host) => {
            write!(
                client,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{host}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            record.status = 307;
            state.lock().unwrap().seen.push(record);
            return Ok(());
        }
        _ => {}
    }

    // The request's body, whole, before anything goes upstream.
    let declared: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Fault::StallRequestAfter(limit) = fault {
        let mut taken = Vec::new();
        let _ = (&mut reader)
            .take(limit.min(declared))
            .read_to_end(&mut taken);
        record.request_bytes = taken.len() as u64;
        state.lock().unwrap().seen.push(record);
        // Hold the connection, reading nothing, until the client gives up.
        std::thread::sleep(Duration::from_secs(120));
        return Ok(());
    }
    let mut body = Vec::new();
    let received = (&mut reader).take(declared).read_to_end(&mut body);
    record.request_bytes = body.len() as u64;
    if received.is_err() || (body.len() as u64) < declared {
        state.lock().unwrap().seen.push(record);
        return Ok(());
    }

    // Forward the request, one per connection.
    let mut upstream_conn = TcpStream::connect(upstream)?;
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name == "connection"
            || (name == "range" && fault == Fault::IgnoreRange)
            || (name == "authorization" && options.basic_auth.is_some())
        {
            continue;
        }
        forwarded.push_str(h);
        forwarded.push_str("\r\n");
    }
    if let Some((user, password)) = &options.basic_auth {
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        forwarded.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    upstream_conn.write_all(forwarded.as_bytes())?;
    upstream_conn.write_all(&body)?;

    // Response head: pass through, but force Connection: close.
    let mut upstream_reader = BufReader::new(upstream_conn);
    let mut status_line = String::new();
    upstream_reader.read_line(&mut status_line)?;
    record.status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut head = status_line.clone();
    loop {
        let mut line = String::new();
        if upstream_reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        head.push_str(&line);
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;

    // Body: until the upstream closes (it was told Connection: close).
    let is_blob_body = path.contains("/blobs/") && (200..300).contains(&record.status);
    let mut sent: u64 = 0;
    let mut buffer = [0u8; 16 * 1024];
    let result = loop {
        let n = match upstream_reader.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let mut chunk = buffer[..n].to_vec();
        let mut stop_after = None;
        match fault {
            Fault::CutAfter(limit) | Fault::StallAfter(limit)
                if is_blob_body && sent + n as u64 >= limit =>
            {
                chunk.truncate((limit - sent) as usize);
                stop_after = Some(fault.clone());
            }
            Fault::FlipByteAt(at) if is_blob_body && at >= sent && at < sent + n as u64 => {
                chunk[(at - sent) as usize] ^= 0xff;
            }
            _ => {}
        }
        if client.write_all(&chunk).is_err() {
            break Ok(());
        }
        sent += chunk.len() as u64;
        if is_blob_body {
            blob_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        match stop_after {
            Some(Fault::StallAfter(_)) => {
                // Hold the connection, sending nothing, until the client gives up.
                let mut probe = [0u8; 1];
                let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
                let _ = client.read(&mut probe);
                break Ok(());
            }
            Some(_) => break Ok(()),
            None => {}
        }
    };
    let _ = client.shutdown(Shutdown::Both);
    record.body_bytes = sent;
    state.lock().unwrap().seen.push(record);
    result
}
