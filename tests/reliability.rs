//! Reliability (issue 9): faults injected between trustkeeper and the real notary-server and
//! registry, SIGKILL at random points, a second writer, a bad input corpus, a secrets scan.
//! Every run converges once the fault clears, with the real notary Go client as referee and no
//! previously signed tag lost. Counts are printed to stderr (uncaptured) for CI.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "reliability/support.rs"]
mod support;

#[path = "reliability/bad_input.rs"]
mod bad_input;
#[path = "reliability/crash.rs"]
mod crash;
#[path = "reliability/deadline.rs"]
mod deadline;
#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/parallel.rs"]
mod parallel;
#[path = "reliability/second_writer.rs"]
mod second_writer;
#[path = "reliability/secrets.rs"]
mod secrets;
