//! Parallel signers, as the seed's matrix workflow runs them: eight `trustkeeper sign` processes
//! at once on one repository, each signing a tag of its own, for several rounds. Every process
//! must succeed (losing a publish race is retried with a jittered backoff and a re-plan) and the
//! Go client must list every tag signed afterwards: nothing lost.

use std::time::{Duration, Instant};

use crate::common::Testbed;
use crate::support::{Cli, digest, notary_list, passphrase, report};

const SIGNERS: usize = 8;
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_signers_all_succeed_and_nothing_is_lost() {
    let tb = Testbed::get();
    let seed = tb.seed("parallel");
    let gun = seed.gun.clone();
    let key = seed.var("DELEGATION_KEY").to_string();
    let sources = ["v1", "multi", "oci-v1", "oci-multi", "latest"];
    let mut expected = notary_list(tb, &gun, None);
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let mut tags = Vec::new();
        for i in 0..SIGNERS {
            let tag = format!("p{round}-{i}");
            let src = sources[(round + i) % sources.len()];
            tb.retag(&seed, src, &tag).await;
            expected.insert(tag.clone(), digest(&seed, src));
            tags.push(tag);
        }
        // One home (trust dir) per signer, as separate CI jobs have; all started at once.
        let clis: Vec<Cli> = (0..SIGNERS)
            .map(|_| Cli::new(Some(passphrase(&seed))))
            .collect();
        let started = Instant::now();
        let children: Vec<_> = clis
            .iter()
            .zip(&tags)
            .map(|(cli, tag)| {
                let image = format!("{gun}:{tag}");
                cli.command(
                    tb,
                    &["sign", &image, "--key", &key, "--role", "targets/releases"],
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        let mut failed = Vec::new();
        for (child, tag) in children.into_iter().zip(&tags) {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                failed.push(format!(
                    "{tag}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let took = started.elapsed();
        slowest = slowest.max(took);
        report(&format!(
            "parallel: round {round}: {SIGNERS} signers in {took:?}, {} failed",
            failed.len()
        ));
        assert!(failed.is_empty(), "round {round}: {failed:#?}");
        // Bounded: the conflict backoff stays within seconds, far below the run deadline.
        assert!(
            took < Duration::from_secs(60),
            "round {round} took {took:?}"
        );
        let listed = notary_list(tb, &gun, None);
        for (tag, want) in &expected {
            assert_eq!(
                listed.get(tag),
                Some(want),
                "round {round}: notary list lost or changed {tag}: {listed:#?}"
            );
        }
    }
    report(&format!("parallel: slowest round {slowest:?}"));
}
