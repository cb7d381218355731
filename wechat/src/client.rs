//! A small HTTP/1.1 client for the WeChat API: one request per connection
//! (`Connection: close`), JSON bodies, bounded time, `http://` or
//! `https://` (TLS by rustls, server certificates checked against the CA
//! bundle [`set_ca_file`] names, by default the system's). It tells apart
//! a request that was surely not sent (connection refused, TLS handshake
//! failed) from one whose fate is unknown (sent, then no answer), which
//! delivery needs.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The system's CA bundle on Debian and its derivatives.
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

static CA_FILE: OnceLock<PathBuf> = OnceLock::new();
static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();

/// The PEM bundle `https://` API servers are checked against (set once,
/// at start; later calls are ignored). Unset: [`DEFAULT_CA_FILE`].
pub fn set_ca_file(path: PathBuf) {
    let _ = CA_FILE.set(path);
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    TLS.get_or_init(|| {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let path = CA_FILE
            .get()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA_FILE));
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&path)
            .map_err(|e| format!("reading the CA bundle {}: {e}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| format!("reading the CA bundle {}: {e}", path.display()))?;
            // a certificate rustls cannot use as a root is skipped, as
            // other clients do with system bundles
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(format!("no CA certificates in {}", path.display()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    })
    .clone()
}

/// How a call ended without a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the server (bad URL, refused, connect timeout).
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request was written; no complete answer came back.
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// An HTTP error status (5xx is transient).
    #[error("HTTP {0}")]
    Status(u16),
}

/// Splits `http(s)://host:port/path?q` into (`host:port`, `host`,
/// `/path?q`, TLS or not).
fn split(url: &str) -> Result<(String, String, String, bool), CallError> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, true)
    } else {
        return Err(CallError::NotSent(format!("bad API URL {url}")));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = hostport.split(':').next().unwrap_or(hostport).to_string();
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    Ok((addr, host, path.to_string(), tls))
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        rest = &rest[end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    out
}

/// Sends `GET` (no body) or `POST` (JSON body) to `url`; returns the JSON answer.
pub async fn call(url: &str, body: Option<&Json>, timeout: Duration) -> Result<Json, CallError> {
    let (addr, host, path, tls) = split(url)?;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| CallError::NotSent(format!("connecting to {addr} timed out")))?
        .map_err(|e| CallError::NotSent(format!("connecting to {addr}: {e}")))?;
    if !tls {
        return exchange(tcp, &host, &path, body, timeout).await;
    }
    let config = tls_config().map_err(CallError::NotSent)?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| CallError::NotSent(format!("bad host name {host}: {e}")))?;
    // nothing of the request is written before the handshake succeeds
    let stream = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| CallError::NotSent(format!("TLS handshake with {addr} timed out")))?
    .map_err(|e| CallError::NotSent(format!("TLS handshake with {addr}: {e}")))?;
    exchange(stream, &host, &path, body, timeout).await
}

/// Writes the request on a connected stream and reads the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    body: Option<&Json>,
    timeout: Duration,
) -> Result<Json, CallError> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let head = match body {
        Some(_) => format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        ),
        None => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    };
    let mut req = head.into_bytes();
    req.extend_from_slice(payload.as_bytes());
    if let Err(e) = stream.write_all(&req).await {
        // a write that failed may still have delivered part of the request
        return Err(CallError::NoAnswer(format!("writing the request: {e}")));
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(timeout, stream.read_to_end(&mut answer)).await {
        Err(_) => return Err(CallError::NoAnswer("the answer timed out".into())),
        // a TLS peer that closes without close_notify after a complete
        // answer: keep what came
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Ok(Err(e)) => return Err(CallError::NoAnswer(format!("reading the answer: {e}"))),
        Ok(Ok(_)) => {}
    }
    let split_at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| CallError::NoAnswer("incomplete HTTP answer".into()))?;
    let head = String::from_utf8_lossy(&answer[..split_at]).to_string();
    let mut body = answer[split_at + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CallError::NoAnswer("bad status line".into()))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    if status != 200 {
        return Err(CallError::Status(status));
    }
    serde_json::from_slice(&body)
        .map_err(|e| CallError::NoAnswer(format!("answer is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_chunks() {
        let (a, h, p, tls) = split("http://127.0.0.1:8080/cgi-bin/token?x=1").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p.as_str(), tls),
            ("127.0.0.1:8080", "127.0.0.1", "/cgi-bin/token?x=1", false)
        );
        assert_eq!(
            split("http://api.example.com").unwrap().0,
            "api.example.com:80"
        );
        let (a, h, _, tls) = split("https://api.weixin.qq.com/cgi-bin/token").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), tls),
            ("api.weixin.qq.com:443", "api.weixin.qq.com", true)
        );
        assert!(matches!(split("ftp://x"), Err(CallError::NotSent(_))));
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
    }
}
