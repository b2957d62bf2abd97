//! Link the `trustkeeper` executable at a fixed address (not position-independent), as Go
//! links the notary client. A CI step starts the binary once per `sign`/`witness`, and a PIE
//! of this size spends ~2 ms of every start applying ~40,000 relocations and copying the pages
//! they touch (measured on the testbed: 23.4 vs 25.5 ms per `sign` of one tag). The heap,
//! stack, shared libraries and mmap regions stay randomized; the code is Rust but for aws-lc.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("-linux-") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
