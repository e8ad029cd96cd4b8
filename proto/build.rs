//! Compiles `proto/gpucost/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ingest = "proto/gpucost/v1/ingest.proto";
    let podresources = "proto/k8s/podresources/v1/api.proto";
    for f in [ingest, podresources] {
        println!("cargo:rerun-if-changed={f}");
    }
    // gpucost.v1 screens each message before decoding it (`codec`).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::ScreenedCodec")
        .compile_fds(protox::compile([ingest], ["proto"])?)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile([podresources], ["proto"])?)?;
    Ok(())
}
