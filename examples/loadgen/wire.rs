//! The open loop's gRPC client: unary ShouldRateLimit calls made directly with the `h2` crate
//! (the HTTP/2 implementation under tonic's and hyper's clients), without tonic's channel.
//! A tonic call also crosses a tower buffer (a channel and a worker task), hyper's client and
//! a task that hyper spawns to stream each request body. On one core that machinery cost more
//! than the socket work, so a tonic-based open loop could not offer ~86k req/s. The server sees
//! the same frames: HEADERS with the gRPC headers tonic sends, one DATA frame with the framed
//! message, then the answer and its `grpc-status` trailer. The closed loop and `--wait-ready`
//! still use tonic.

use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use h2::client::SendRequest;
use prost::Message;
use tokio::net::TcpStream;
use tonic::Status;
use tonic::codegen::Bytes;
use tonic::codegen::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};

use crate::tally::Outcome;

/// The RPC's path, as tonic's generated client sends it.
const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where calls go and the headers every call carries; shared by all connections.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Full request URI (scheme, authority and the RPC's path).
    uri: Uri,
    /// `grpc-timeout`, in tonic's format.
    timeout: HeaderValue,
    /// The same deadline, kept by the client too: a server that stops answering (stopped,
    /// wedged) must not keep a call, and so the run, waiting forever.
    deadline: Duration,
}

impl Target {
    /// The target for server `addr` (`http://host:port`) and the per-call deadline `timeout`.
    pub(crate) fn new(addr: &str, timeout: Duration) -> anyhow::Result<Self> {
        let deadline = timeout;
        let base: Uri = addr.parse().context("--addr is not a URI")?;
        let authority = base.authority().context("--addr has no host:port")?;
        let uri = Uri::builder()
            .scheme(base.scheme_str().unwrap_or("http"))
            .authority(authority.as_str())
            .path_and_query(PATH)
            .build()
            .context("building the request URI")?;
        // Let tonic format the deadline, so the header is exactly what its client sends.
        let mut probe = tonic::Request::new(());
        probe.set_timeout(timeout);
        let timeout = probe
            .metadata()
            .get("grpc-timeout")
            .context("tonic set no grpc-timeout")?
            .to_str()
            .context("grpc-timeout is not text")?
            .parse()
            .context("grpc-timeout is not a header value")?;
        Ok(Self {
            uri,
            timeout,
            deadline,
        })
    }

    /// Opens one HTTP/2 connection (its own TCP connection, `TCP_NODELAY`); the task driving it
    /// ends when every handle to it is dropped.
    pub(crate) async fn connect(&self) -> anyhow::Result<SendRequest<Bytes>> {
        let authority = self.uri.authority().context("no authority")?.as_str();
        // The same bound as the tonic endpoint's connect timeout.
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
            .await
            .with_context(|| format!("connecting to {authority}: timed out"))?
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            // A broken connection shows up as failed calls; nothing else to do with the error.
            let _ = connection.await;
        });
        Ok(send)
    }

    /// Makes one ShouldRateLimit call with `body` (an already gRPC-framed request).
    pub(crate) async fn call(&self, send: SendRequest<Bytes>, body: Bytes) -> Outcome {
        match tokio::time::timeout(self.deadline, self.exchange(send, body)).await {
            Ok(Ok(response)) => Outcome::answered(&response),
            Ok(Err(status)) => Outcome::Failed(status.code()),
            Err(_) => Outcome::Failed(tonic::Code::DeadlineExceeded),
        }
    }

    async fn exchange(
        &self,
        send: SendRequest<Bytes>,
        body: Bytes,
    ) -> Result<RateLimitResponse, Status> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("grpc-timeout", self.timeout.clone());
        let mut send = send.ready().await.map_err(transport)?;
        let (response, mut stream) = send.send_request(request, false).map_err(transport)?;
        stream.send_data(body, true).map_err(transport)?;
        let response = response.await.map_err(transport)?;
        // A failure may come as a trailers-only answer: grpc-status in the headers.
        match grpc_status(response.headers()) {
            Some(Ok(())) => return Err(Status::internal("trailers-only answer, no message")),
            Some(Err(status)) => return Err(status),
            None => {}
        }
        let http_status = response.status();
        let mut body = response.into_body();
        let mut message: Option<Bytes> = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(transport)?;
            // Give the window back, or a long run would stall on flow control.
            let _ = body.flow_control().release_capacity(chunk.len());
            message = Some(match message {
                None => chunk,
                Some(before) => [before, chunk].concat().into(),
            });
        }
        let trailers = body.trailers().await.map_err(transport)?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(Ok(())) => {}
            Some(Err(status)) => return Err(status),
            None if http_status != StatusCode::OK => {
                return Err(Status::unknown(format!("HTTP status {http_status}")));
            }
            None => return Err(Status::internal("no grpc-status trailer")),
        }
        decode(message.as_deref().unwrap_or_default())
    }
}

/// The `grpc-status` in `headers`, if there is one: OK is checked without tonic, which would
/// copy the whole map for every answer; anything else is left to tonic to read.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let value = headers.get("grpc-status")?;
    if value.as_bytes() == b"0" {
        return Some(Ok(()));
    }
    Some(Err(Status::from_header_map(headers).unwrap_or_else(|| {
        Status::unknown(format!("unreadable grpc-status {value:?}"))
    })))
}

/// The message in one gRPC frame: flag 0 (uncompressed), big-endian length, protobuf.
fn decode(frame: &[u8]) -> Result<RateLimitResponse, Status> {
    let malformed = || Status::internal("malformed gRPC frame");
    let (prefix, message) = frame.split_at_checked(5).ok_or_else(malformed)?;
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if prefix[0] != 0 || usize::try_from(length).ok() != Some(message.len()) {
        return Err(malformed());
    }
    RateLimitResponse::decode(message).map_err(|error| Status::internal(error.to_string()))
}

/// A transport failure, with the gRPC code tonic would give it (from the HTTP/2 reset reason).
fn transport(error: h2::Error) -> Status {
    Status::from_error(Box::new(error))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as RlsCode;

    use tonic::Code;

    use super::*;

    #[test]
    fn decodes_one_frame_and_refuses_a_bad_one() {
        let response = RateLimitResponse {
            overall_code: RlsCode::OverLimit.into(),
            ..RateLimitResponse::default()
        };
        let mut frame = response.encode_to_vec();
        let length = u32::try_from(frame.len()).unwrap().to_be_bytes();
        frame.splice(0..0, [0, length[0], length[1], length[2], length[3]]);
        assert_eq!(decode(&frame).unwrap(), response);
        assert_eq!(decode(&frame[..4]).unwrap_err().code(), Code::Internal);
        assert_eq!(
            decode(&frame[..frame.len() - 1]).unwrap_err().code(),
            Code::Internal
        );
        frame[0] = 1; // compressed: not negotiated, so not accepted
        assert_eq!(decode(&frame).unwrap_err().code(), Code::Internal);
    }

    #[test]
    fn reads_grpc_status() {
        let mut headers = HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&headers), Some(Ok(()))));
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        let status = grpc_status(&headers).unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_the_call_at_the_deadline() {
        // Accepts and holds the connection, never speaks HTTP/2: the call must still end.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move { listener.accept().await });
        let target = Target::new(&format!("http://{addr}"), Duration::from_millis(200)).unwrap();
        let send = target.connect().await.unwrap();
        let outcome = target
            .call(send, Bytes::from_static(&[0, 0, 0, 0, 0]))
            .await;
        assert!(matches!(outcome, Outcome::Failed(Code::DeadlineExceeded)));
        drop(held);
    }

    #[test]
    fn sends_tonics_deadline_header() {
        let target = Target::new("http://127.0.0.1:8081", Duration::from_secs(5));
        let target = target.unwrap();
        assert_eq!(target.timeout, "5000000u");
        assert_eq!(
            target.uri.to_string(),
            format!("http://127.0.0.1:8081{PATH}")
        );
    }
}
