//! A minimal HTTP/1.1 endpoint for Prometheus: `GET /metrics`.  Each
//! connection gets the exposition rendered when it was accepted and is
//! served by a task of its own, so a slow or idle client never holds up
//! the event loop.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `PORT`, `:PORT` (loopback), `ADDR:PORT` or `[ADDR6]:PORT`.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let loopback = |p: &str| {
        p.parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    };
    if let Ok(a) = loopback(s.strip_prefix(':').unwrap_or(s)) {
        return Ok(a);
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?}: expected ADDR:PORT (such as 127.0.0.1:9474 or [::1]:9474) or a port")
    })
}

pub(crate) struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds now, so that a taken port is an error at start-up.
    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        Ok(Server {
            listener: TcpListener::from_std(std)?,
        })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub(crate) async fn accept(&self) -> std::io::Result<TcpStream> {
        self.listener.accept().await.map(|(s, _)| s)
    }
}

/// Answers one request on `stream` with `body` (for `/metrics`).
pub(crate) async fn serve(mut stream: TcpStream, body: String) {
    let mut request = Vec::with_capacity(1024);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 << 10 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(head, Ok(Ok(()))) {
        return;
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let response = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => reply(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &body,
            method == b"HEAD",
        ),
        (b"GET" | b"HEAD", b"/") => reply(
            "200 OK",
            "text/plain; charset=utf-8",
            "rsttrace: metrics at /metrics\n",
            method == b"HEAD",
        ),
        (b"GET" | b"HEAD", _) => reply("404 Not Found", "text/plain", "not found\n", false),
        _ => reply("405 Method Not Allowed", "text/plain", "GET only\n", false),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn reply(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9474").unwrap().to_string(), "127.0.0.1:9474");
        assert_eq!(parse_addr(":9474").unwrap().to_string(), "127.0.0.1:9474");
        assert_eq!(parse_addr("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(parse_addr("[::1]:9474").unwrap().to_string(), "[::1]:9474");
        assert!(parse_addr("localhost").is_err());
    }
}
