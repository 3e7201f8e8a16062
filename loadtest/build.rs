//! Generates a gRPC *client* for `inference.GRPCInferenceService` from the
//! project's proto (../proto), with the protoc binary that the
//! protoc-bin-vendored crate ships, so no system protoc is needed. Only the
//! client: the load generator must not depend on the server crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=../proto/grpc_service.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_protos(&["../proto/grpc_service.proto"], &["../proto"])?;
    Ok(())
}
