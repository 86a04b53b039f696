//! A minimal HTTPS server for fakes: throwaway CA, loopback port, synchronous handler.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One request as a fake sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Query parameters (last one wins).
    pub query: BTreeMap<String, String>,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    /// Raw body.
    pub body: Bytes,
}

impl Request {
    /// The bearer token of the `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
    }

    /// The body as JSON (`Null` when empty or invalid).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (JSON unless `content_type` says otherwise).
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&v).expect("json"),
        }
    }

    /// An empty response (e.g. 204).
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;
type Delay = Arc<dyn Fn(&Request) -> Duration + Send + Sync>;

/// A running fake: its base URL and the CA certificate that signs its TLS certificate.
#[derive(Debug)]
pub struct TestServer {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// PEM of the throwaway CA (trust it in the client under test).
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "secret-manager TEST-ONLY CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server cert");
    (Arc::new(config), ca_cert.pem())
}

fn decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl TestServer {
    /// Starts serving `handler` over HTTPS on a free loopback port (needs a tokio runtime).
    pub async fn start(handler: impl Fn(Request) -> Reply + Send + Sync + 'static) -> TestServer {
        Self::start_with(handler, true, Arc::new(|_: &Request| Duration::ZERO)).await
    }

    /// The same over plain HTTP, for clients that cannot be given an extra CA (the
    /// google-cloud-* clients build their own reqwest client); `ca_pem` is then empty.
    pub async fn start_http(
        handler: impl Fn(Request) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        Self::start_with(handler, false, Arc::new(|_: &Request| Duration::ZERO)).await
    }

    /// Plain HTTP, each request answered `delay(&request)` after it arrived: the wait is
    /// an async timer outside the handler, so requests in flight wait at the same time
    /// (as against a remote service) instead of queueing behind each other.
    pub async fn start_http_delayed(
        handler: impl Fn(Request) -> Reply + Send + Sync + 'static,
        delay: impl Fn(&Request) -> Duration + Send + Sync + 'static,
    ) -> TestServer {
        Self::start_with(handler, false, Arc::new(delay)).await
    }

    async fn start_with(
        handler: impl Fn(Request) -> Reply + Send + Sync + 'static,
        tls: bool,
        delay: Delay,
    ) -> TestServer {
        let handler: Handler = Arc::new(handler);
        let (config, ca_pem) = if tls {
            let (c, pem) = tls_config();
            (Some(c), pem)
        } else {
            (None, String::new())
        };
        let acceptor = config.map(TlsAcceptor::from);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let delay = delay.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let delay = delay.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let raw_path = parts.uri.path();
                            let query = parts
                                .uri
                                .query()
                                .map(|q| {
                                    form_urlencoded::parse(q.as_bytes())
                                        .into_owned()
                                        .collect::<BTreeMap<_, _>>()
                                })
                                .unwrap_or_default();
                            let headers = parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_ascii_lowercase(),
                                        v.to_str().unwrap_or("").to_owned(),
                                    )
                                })
                                .collect();
                            let r = Request {
                                method: parts.method.as_str().to_owned(),
                                path: decode(raw_path),
                                query,
                                headers,
                                body,
                            };
                            let wait = delay(&r);
                            if !wait.is_zero() {
                                tokio::time::sleep(wait).await;
                            }
                            let reply = handler(r);
                            let mut resp = hyper::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k.as_str(), v.as_str());
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let builder = builder.http1_only();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        TestServer {
            url: format!(
                "{}://127.0.0.1:{}",
                if tls { "https" } else { "http" },
                addr.port()
            ),
            ca_pem,
            task,
        }
    }
}
