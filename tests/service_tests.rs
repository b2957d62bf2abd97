//! The switch for the tests that need the real services. Without `--features service-tests`
//! this test is listed as ignored, with the reason, so a plain `cargo test` says the service
//! tests did not run; with it, every service must be given, so `scripts/test.sh` (and
//! `.ci/run`) fail instead of passing with a service missing.

#[test]
#[cfg_attr(
    not(feature = "service-tests"),
    ignore = "the service tests are off: run scripts/test.sh, or start the testbeds and run \
              cargo test --features service-tests (README, \"Tests\")"
)]
fn are_on() {
    for var in [
        "TRUSTKEEPER_TESTBED",
        "TRUSTKEEPER_TESTBED_TOKEN",
        "TRUSTKEEPER_KUBE_TESTBED",
        "TRUSTKEEPER_HELM",
        "TRUSTKEEPER_REFEREES",
    ] {
        let dir = std::env::var_os(var)
            .unwrap_or_else(|| panic!("{var} is not set: the service tests need every service"));
        assert!(
            std::path::Path::new(&dir).exists(),
            "{var}={} does not exist",
            dir.to_string_lossy()
        );
    }
}
