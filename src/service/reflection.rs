//! gRPC server reflection, so `grpcurl` and similar tools can list, describe and call quotad's
//! services without .proto files: Envoy's RateLimitService, grpc.health.v1 and reflection
//! itself, in both the v1 and the older v1alpha protocol (grpcurl before 1.8.8 speaks only
//! v1alpha).
//!
//! envoy-types carries descriptors for all of Envoy's API but does not export them, so the
//! subset the RateLimitService needs (`envoy/service/ratelimit/v3/rls.proto` and every file it
//! imports, source info stripped, about 40 KB) is checked in as `reflection_rls.bin`. When
//! envoy-types is upgraded, regenerate it from that crate's `src/generated/types.bin` by
//! keeping the transitive imports of `rls.proto`, dependencies first.

use tonic_reflection::server::Builder;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};
use tonic_reflection::server::v1alpha::{
    ServerReflection as ServerReflectionV1Alpha,
    ServerReflectionServer as ServerReflectionServerV1Alpha,
};

pub use tonic_reflection::server::Error as ReflectionError;

/// The encoded FileDescriptorSet of Envoy's RateLimitService and everything it imports.
pub const RLS_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("reflection_rls.bin");

fn builder() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(RLS_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The v1 reflection service describing the RateLimitService and grpc.health.v1.
pub fn reflection_v1() -> Result<ServerReflectionServer<impl ServerReflection>, ReflectionError> {
    builder().build_v1()
}

/// The same, for clients that speak only the v1alpha reflection protocol.
pub fn reflection_v1alpha()
-> Result<ServerReflectionServerV1Alpha<impl ServerReflectionV1Alpha>, ReflectionError> {
    builder().build_v1alpha()
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    use super::*;

    /// Serves reflection on loopback and sends one request, as grpcurl would.
    async fn ask(request: MessageRequest) -> MessageResponse {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tonic::transport::Server::builder()
            .add_service(reflection_v1().expect("descriptors decode"))
            .add_service(reflection_v1alpha().expect("descriptors decode"))
            .serve_with_incoming(TcpListenerStream::new(listener));
        let server = tokio::spawn(server);
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            .expect("connects");
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection call")
            .into_inner();
        let answer: ServerReflectionResponse = answers
            .message()
            .await
            .expect("answer")
            .expect("one answer");
        server.abort();
        answer.message_response.expect("a response")
    }

    #[tokio::test]
    async fn lists_the_rate_limit_service_and_health() {
        let MessageResponse::ListServicesResponse(list) =
            ask(MessageRequest::ListServices(String::new())).await
        else {
            panic!("not a service list");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == SERVICE_NAME), "{names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn describes_the_rate_limit_request() {
        let symbol = "envoy.service.ratelimit.v3.RateLimitRequest".to_owned();
        let answer = ask(MessageRequest::FileContainingSymbol(symbol)).await;
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            panic!("no file for the symbol: {answer:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}
