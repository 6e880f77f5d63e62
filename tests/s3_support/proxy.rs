//! A fault-injecting HTTP proxy on 127.0.0.1 (plain `std::net`), between lifeboat and the S3
//! server. Every request gets its own upstream connection (`Connection: close` both ways),
//! so faults apply to one request each. Rules match a request by method and a substring of
//! its target and fire a given number of times:
//!
//! - [`Fault::Status`]: answer with that HTTP status and an S3 error body, never forwarding;
//! - [`Fault::ErrorIn200`]: answer `200 OK` whose body is an S3 `<Error>` (as S3 may for
//!   `CompleteMultipartUpload`);
//! - [`Fault::DropRequest`]: forward only that many body bytes, then drop both connections;
//! - [`Fault::DropResponse`]: forward the whole request (the server applies it), then pass
//!   only that many bytes of the answer and drop (0: no answer at all);
//! - [`Fault::Delay`]: hold the answer that long before passing it on.
//!
//! Every request line and its headers are logged for assertions.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Status(u16),
    ErrorIn200,
    DropRequest(usize),
    DropResponse(usize),
    Delay(Duration),
}

/// A rule: requests with `method` whose target contains every one of `contains` (and
/// none of `excludes`) get `fault`, `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub contains: Vec<String>,
    pub excludes: Vec<String>,
    pub fault: Fault,
    pub times: usize,
    pub fired: usize,
}

impl Rule {
    pub fn new(method: &'static str, contains: &[&str], fault: Fault, times: usize) -> Self {
        Rule {
            method,
            contains: contains.iter().map(|s| s.to_string()).collect(),
            excludes: Vec::new(),
            fault,
            times,
            fired: 0,
        }
    }

    pub fn excluding(mut self, excludes: &[&str]) -> Self {
        self.excludes = excludes.iter().map(|s| s.to_string()).collect();
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.fired < self.times
            && self.method == method
            && self.contains.iter().all(|c| target.contains(c.as_str()))
            && !self.excludes.iter().any(|c| target.contains(c.as_str()))
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub target: String,
    /// Lowercased header names with their values.
    pub headers: Vec<(String, String)>,
    pub fault: Option<Fault>,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Proxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (rules, log, stop) = (rules.clone(), log.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (rules, log) = (rules.clone(), log.clone());
                    thread::spawn(move || {
                        let _ = handle(conn, upstream, &rules, &log);
                    });
                }
            });
        }
        Proxy {
            port,
            rules,
            log,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Rules that have not fired as often as they were meant to.
    pub fn unfired(&self) -> Vec<Rule> {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.fired < r.times && r.times != usize::MAX)
            .cloned()
            .collect()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads an HTTP head (through the blank line); `None` on a closed connection.
fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn headers_of(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The head with `Connection: close` in place of any connection header.
fn with_close(lines: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if i > 0 && (name == "connection" || name == "keep-alive") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn error_body(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
    )
}

fn canned(client: &mut TcpStream, status: u16, body: &str, head_only: bool) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let mut text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        text.push_str(body);
    }
    client.write_all(text.as_bytes())?;
    client.flush()
}

fn handle(
    client: TcpStream,
    upstream: u16,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<Logged>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::with_capacity(64 * 1024, client.try_clone()?);
    let mut client = client;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut first = head[0].split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers = headers_of(&head);
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.matches(&method, &target))
            .map(|r| {
                r.fired += 1;
                r.fault
            })
    };
    log.lock().unwrap().push(Logged {
        method: method.clone(),
        target: target.clone(),
        headers,
        fault,
    });
    let head_only = method == "HEAD";

    match fault {
        Some(Fault::Status(code)) => {
            io::copy(&mut (&mut reader).take(length as u64), &mut io::sink())?;
            let code_name = match code {
                503 => "SlowDown",
                500 => "InternalError",
                _ => "ServiceUnavailable",
            };
            return canned(&mut client, code, &error_body(code_name), head_only);
        }
        Some(Fault::ErrorIn200) => {
            io::copy(&mut (&mut reader).take(length as u64), &mut io::sink())?;
            return canned(&mut client, 200, &error_body("InternalError"), head_only);
        }
        _ => {}
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&with_close(&head))?;
    let body_limit = match fault {
        Some(Fault::DropRequest(n)) => n.min(length),
        _ => length,
    };
    io::copy(&mut (&mut reader).take(body_limit as u64), &mut up)?;
    if let Some(Fault::DropRequest(_)) = fault {
        let _ = up.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    up.flush()?;

    let mut up_reader = BufReader::with_capacity(64 * 1024, up.try_clone()?);
    let Some(resp_head) = read_head(&mut up_reader)? else {
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    };
    if let Some(Fault::Delay(d)) = fault {
        thread::sleep(d);
    }
    let resp_head = with_close(&resp_head);
    match fault {
        Some(Fault::DropResponse(n)) => {
            // Read the whole answer first, so the server has finished applying the request.
            let mut rest = Vec::new();
            let _ = up_reader.read_to_end(&mut rest);
            let mut all = resp_head;
            all.extend_from_slice(&rest);
            let _ = client.write_all(&all[..n.min(all.len())]);
            let _ = client.flush();
            let _ = client.shutdown(Shutdown::Both);
        }
        _ => {
            client.write_all(&resp_head)?;
            io::copy(&mut up_reader, &mut client)?;
            client.flush()?;
            let _ = client.shutdown(Shutdown::Write);
        }
    }
    let _ = up.shutdown(Shutdown::Both);
    Ok(())
}
