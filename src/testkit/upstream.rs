//! An upstream that records every request a proxy forwards to it: the request line exactly
//! as sent and every header, in order and with duplicates. It reads HTTP/1.1 from the raw
//! socket rather than through an HTTP library, so a path no library would accept is still
//! recorded, never turned into a 400 that looks like the proxy's refusal.
//!
//! Each request is answered 200 with a JSON echo (`method`, `path`, `headers`, as the
//! demo's echo upstream answers) and `connection: close`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bytes read at most for one request head.
const MAX_HEAD: usize = 64 * 1024;

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub method: String,
    /// The request target as written on the request line (path and query).
    pub target: String,
    /// Header names in lower case, values as sent, in order.
    pub headers: Vec<(String, String)>,
}

impl Forwarded {
    /// Every value of header `name` (lower case).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// A recording upstream on a free loopback port, stopped on drop.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Forwarded>>>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    /// Starts recording on 127.0.0.1 with a free port.
    pub async fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, Arc::clone(&record)));
            }
        });
        RecordingUpstream { addr, seen, task }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Forwarded> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received since the last call, oldest first.
    pub fn take(&self) -> Vec<Forwarded> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head, records it and answers; the connection then closes, so a body
/// is never mistaken for the next request.
async fn answer(mut stream: TcpStream, seen: Arc<Mutex<Vec<Forwarded>>>) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if head.len() > MAX_HEAD {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    };
    let Some(request) = parse(&head[..end]) else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let headers: Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let body =
        json!({"method": request.method, "path": request.target, "headers": headers}).to_string();
    seen.lock().unwrap().push(request);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn parse(head: &[u8]) -> Option<Forwarded> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.splitn(3, ' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Some(Forwarded {
        method,
        target,
        headers,
    })
}
