//! A raw HTTP/1.1 client over unix sockets and TCP, for black-box tests of the daemon: it sends exactly the
//! bytes given (hostile ones included) and parses whatever comes back.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// Status code; 0 when the connection closed without a response.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawReply {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Target {
    /// A unix socket path.
    Unix(std::path::PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// Sends `request` as is and reads until the server closes the connection.
pub fn exchange(target: &Target, request: &[u8]) -> RawReply {
    try_exchange(target, request).unwrap_or_else(|e| panic!("connect {target:?}: {e}"))
}

/// [`exchange`], or the error when nothing accepts the connection (a daemon that has stopped).
pub fn try_exchange(target: &Target, request: &[u8]) -> std::io::Result<RawReply> {
    let mut out = Vec::new();
    match target {
        Target::Unix(path) => {
            let mut s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
            let _ = s.write_all(request);
            let _ = s.read_to_end(&mut out);
        }
        Target::Tcp(addr) => {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
            let _ = s.write_all(request);
            let _ = s.read_to_end(&mut out);
        }
    }
    Ok(parse(&out))
}

/// A `Connection: close` request with the given extra header lines (`"Name: value"`) and body.
pub fn request(method: &str, uri: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {uri} HTTP/1.1\r\nHost: keyway\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        let _ = write!(text, "Content-Length: {}\r\n", body.len());
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `GET uri`, or `None` when nothing accepts the connection (a daemon that has stopped).
pub fn try_get(target: &Target, uri: &str, headers: &[&str]) -> Option<RawReply> {
    try_exchange(target, &request("GET", uri, headers, b"")).ok()
}

/// `GET uri` with extra headers.
pub fn get(target: &Target, uri: &str, headers: &[&str]) -> RawReply {
    exchange(target, &request("GET", uri, headers, b""))
}

/// `POST uri` with a JSON body.
pub fn post(target: &Target, uri: &str, headers: &[&str], body: &[u8]) -> RawReply {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    exchange(target, &request("POST", uri, &all, body))
}

/// Parses one HTTP/1.1 response (content-length or read-to-close bodies).
pub fn parse(bytes: &[u8]) -> RawReply {
    let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawReply {
            status: 0,
            headers: Vec::new(),
            body: bytes.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    RawReply {
        status,
        headers,
        body,
    }
}

/// Whether something accepts connections on the unix socket.
pub fn unix_listening(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}
