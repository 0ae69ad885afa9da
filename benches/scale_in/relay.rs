//! A byte-counting TCP relay in front of the simulator's Nomad API.

use super::*;

// ---------------------------------------------------------------------------
// A byte-counting TCP relay in front of the simulator's Nomad API

/// Bytes relayed: (client to Nomad, Nomad to client).
#[derive(Default)]
pub struct Bytes2 {
    pub up: AtomicU64,
    pub down: AtomicU64,
    /// When each `GET /v1/allocations` (the cluster-wide allocation list the
    /// operator reads to rank nodes by load) was sent.
    pub alloc_list_reads: Mutex<Vec<Instant>>,
    /// Every request line seen (when, "METHOD /v1/kind"), for the timeline.
    pub requests: Mutex<Vec<(Instant, String)>>,
}

impl Bytes2 {
    pub fn get(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

pub struct Relay {
    pub url: String,
    pub bytes: Arc<Bytes2>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    n: Arc<Bytes2>,
    up: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        let c = if up { &n.up } else { &n.down };
        c.fetch_add(k as u64, Ordering::Relaxed);
        if up {
            let now = Instant::now();
            if buf[..k].starts_with(b"GET /v1/allocations") {
                n.alloc_list_reads.lock().unwrap().push(now);
            }
            if let Some(line) = request_kind(&buf[..k]) {
                n.requests.lock().unwrap().push((now, line));
            }
        }
        if w.write_all(&buf[..k]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// "POST /v1/node/:id/drain" from the start of an HTTP request, if it is one.
pub fn request_kind(b: &[u8]) -> Option<String> {
    let head = &b[..b.len().min(200)];
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    if !matches!(method, "GET" | "POST" | "PUT") {
        return None;
    }
    let path = parts.next()?.split('?').next()?;
    let segs: Vec<&str> = path.split('/').collect();
    let kind = match segs.as_slice() {
        ["", "v1", "node", _] => "/v1/node/:id".to_owned(),
        ["", "v1", "node", _, sub] => format!("/v1/node/:id/{sub}"),
        _ => path.to_owned(),
    };
    Some(format!("{method} {kind}"))
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        // A 1 MiB send buffer, as the simulator's own listener has: large
        // responses go out in one write instead of waiting on delayed ACKs.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        let _ = sock.set_send_buffer_size(1 << 20);
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(4096).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bytes = Arc::new(Bytes2::default());
        let b = bytes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of file descriptors: wait for some to close rather
                    // than spin on accept.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let b = b.clone();
                tokio::spawn(async move {
                    // Out of file descriptors the client is dropped, as a
                    // server refuses a connection over its limit.
                    let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                        return;
                    };
                    let _ = sock.set_send_buffer_size(1 << 20);
                    let Ok(server) = sock.connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, b.clone(), true));
                    pump(sr, cw, b, false).await;
                });
            }
        });
        Relay { url, bytes, task }
    }
}
