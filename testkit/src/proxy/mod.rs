//! HTTP proxies the harness puts between the operator and what it talks to,
//! for what the real thing never does (moto never throttles; the simulator
//! never sends an endless body): `aws_faults` in front of moto, `nomad` in
//! front of the simulator. Both are an axum server in the test's process
//! (`LocalServer`) forwarding to an `Upstream`.

pub mod aws_faults;
pub mod launch_times;
pub mod nomad;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use tokio::task::JoinHandle;

/// An axum app served on 127.0.0.1 (any free port) by this process until
/// dropped.
pub struct LocalServer {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalServer {
    pub async fn start(app: axum::Router) -> LocalServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a local proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LocalServer { url, task }
    }
}

/// Where a proxy forwards requests to.
pub struct Upstream {
    base: String,
    http: reqwest::Client,
}

impl Upstream {
    pub fn new(base: &str) -> Upstream {
        Upstream::with_client(base, reqwest::Client::new())
    }

    pub fn with_client(base: &str, http: reqwest::Client) -> Upstream {
        Upstream {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The request as it came, to the same path and query upstream; the
    /// caller's Host and Content-Length do not apply there.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> reqwest::Result<reqwest::Response> {
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        self.http
            .request(method, format!("{}{path_and_query}", self.base))
            .headers(headers)
            .body(body)
            .send()
            .await
    }
}
