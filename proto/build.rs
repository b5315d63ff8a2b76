//! Compiles the kinlink.v1 contracts with protox, a pure-Rust protobuf compiler, so a build
//! needs no `protoc` on the machine. The descriptor set is kept too: the wire-compatibility
//! check reads it.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "kinlink/v1/referral.proto",
    "kinlink/v1/enrichment.proto",
    "kinlink/v1/alert.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("kinlink_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.compile_fds(descriptors)?;
    Ok(())
}
