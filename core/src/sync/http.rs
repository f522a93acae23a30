//! The HTTP transport (feature `client`): one blocking reqwest client with rustls, gzip both
//! ways, bearer auth. One exchange per call; the engine decides about retries.

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::protocol::{self, RegisterBody, Registered, SyncRequest, SyncResponse};
use super::transport::{Chunk, Refusal, Transport};
use crate::error::{Error, Result};

pub struct HttpTransport {
    client: Client,
    base: String,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the app may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fn unavailable(e: reqwest::Error) -> Refusal {
    // Not the URL: it may carry nothing private, but keep logs plain.
    Refusal::Unavailable(e.without_url().to_string())
}

impl HttpTransport {
    /// A transport to the server at `base` (`http://` or `https://`), each exchange bounded by
    /// `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<HttpTransport> {
        install_crypto();
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BadServerUrl(base));
        }
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("curbside/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Network(format!("HTTP client: {e}")))?;
        Ok(HttpTransport { client, base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        rb: RequestBuilder,
        token: Option<&str>,
    ) -> std::result::Result<Response, Refusal> {
        let rb = match token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        };
        rb.send().map_err(unavailable)
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &B,
    ) -> std::result::Result<R, Refusal> {
        let json = serde_json::to_vec(body).map_err(|e| Refusal::Unreadable(e.to_string()))?;
        // Pushes of a day's work are text and shrink several times over.
        let rb = self
            .client
            .post(self.url(path))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let rb = if json.len() > 1024 {
            rb.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                .body(gzip(&json))
        } else {
            rb.body(json)
        };
        let response = self.send(rb, token)?;
        let status = response.status().as_u16();
        let body = response.bytes().map_err(unavailable)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| Refusal::Unreadable(e.to_string()));
        }
        Err(Refusal::from_answer(status, &body))
    }
}

fn header_u64(r: &Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Transport for HttpTransport {
    fn register(&self, body: &RegisterBody) -> std::result::Result<Registered, Refusal> {
        self.post(protocol::DEVICES, None, body)
    }

    fn sync(&self, token: &str, body: &SyncRequest) -> std::result::Result<SyncResponse, Refusal> {
        self.post(protocol::SYNC, Some(token), body)
    }

    fn photo_offset(&self, token: &str, sha256: &str) -> std::result::Result<u64, Refusal> {
        let url = self.url(&format!("{}/{sha256}", protocol::MEDIA));
        let head = self.send(self.client.head(url), Some(token))?;
        match head.status().as_u16() {
            404 => Ok(0),
            200 | 204 => Ok(header_u64(&head, protocol::UPLOAD_OFFSET).unwrap_or(0)),
            s => Err(Refusal::from_answer(s, b"")),
        }
    }

    fn photo_chunk(
        &self,
        token: &str,
        sha256: &str,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> std::result::Result<Chunk, Refusal> {
        let url = self.url(&format!("{}/{sha256}", protocol::MEDIA));
        let rb = self
            .client
            .patch(url)
            .header(protocol::UPLOAD_OFFSET, offset.to_string())
            .header(protocol::UPLOAD_LENGTH, total.to_string())
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .body(chunk.to_vec());
        let response = self.send(rb, Some(token))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(Chunk::Taken(
                header_u64(&response, protocol::UPLOAD_OFFSET)
                    .unwrap_or(offset + chunk.len() as u64),
            )),
            409 => Ok(Chunk::Moved),
            s => {
                let body = response.bytes().unwrap_or_default();
                Err(Refusal::from_answer(s, &body))
            }
        }
    }
}
