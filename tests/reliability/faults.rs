//! Faults injected by a proxy in front of notary-server and one in front of the registry: each
//! round signs a new tag through a fault, then again with the fault cleared. Every round must end
//! in the planned state (the Go client lists the new tag with its digest) with every previously
//! signed tag still there, and a failed run must not have published anything unless the fault
//! struck after the publish reached the server.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::Testbed;
use crate::fault_proxy::{Action, FaultProxy, Rule};
use crate::support::{creds, digest, notary_list, ready, report, run_engine, spec};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// The run under the fault fails and publishes nothing.
    FailsUnpublished,
    /// The run fails; the publish may or may not have reached the server.
    FailsMaybePublished,
    /// The client rides it out (retries) in the same run.
    Survives,
    /// Either (the client may or may not retry this).
    Either,
}

struct Round {
    name: &'static str,
    notary: Vec<Rule>,
    registry: Vec<Rule>,
    refuse_notary: bool,
    refuse_registry: bool,
    expect: Expect,
    /// The Ready reason of a run that fails under the fault.
    reason: Option<&'static str>,
}

fn round(name: &'static str, expect: Expect) -> Round {
    Round {
        name,
        notary: vec![],
        registry: vec![],
        refuse_notary: false,
        refuse_registry: false,
        expect,
        reason: None,
    }
}

fn rounds() -> Vec<Round> {
    let slow = Action::Delay(TIMEOUT + Duration::from_secs(2));
    vec![
        Round {
            refuse_notary: true,
            reason: Some("NotaryUnreachable"),
            ..round("notary refuses connections", Expect::FailsUnpublished)
        },
        Round {
            notary: vec![Rule::new(Some("POST"), Action::Status(503))],
            reason: Some("PublishFailed"),
            ..round("notary 503 to the publish", Expect::FailsUnpublished)
        },
        Round {
            notary: vec![Rule::new(Some("POST"), Action::Status(500))],
            reason: Some("PublishFailed"),
            ..round("notary 500 to the publish", Expect::FailsUnpublished)
        },
        Round {
            notary: vec![Rule::new(Some("POST"), Action::CutBeforeForward)],
            reason: Some("NotaryUnreachable"),
            ..round(
                "connection cut before the publish reached notary",
                Expect::FailsUnpublished,
            )
        },
        Round {
            notary: vec![Rule::new(Some("POST"), Action::CutAfterForward)],
            reason: Some("NotaryUnreachable"),
            ..round(
                "connection cut after the publish reached notary",
                Expect::FailsMaybePublished,
            )
        },
        Round {
            notary: vec![Rule::new(Some("POST"), slow.clone())],
            reason: Some("NotaryUnreachable"),
            ..round(
                "publish answered after the client timeout",
                Expect::FailsMaybePublished,
            )
        },
        Round {
            notary: vec![Rule::new(Some("GET"), slow.clone())],
            reason: Some("NotaryUnreachable"),
            ..round(
                "metadata fetch slower than the timeout",
                Expect::FailsUnpublished,
            )
        },
        Round {
            notary: vec![Rule::new(Some("GET"), Action::Status(503)).path("snapshot")],
            reason: Some("NotaryUnreachable"),
            ..round("notary 503 to the snapshot fetch", Expect::Either)
        },
        Round {
            // Depending on how many fetches a run makes, before or after the publish.
            notary: vec![
                Rule::new(Some("GET"), Action::Status(503))
                    .skip(4)
                    .times(50),
            ],
            reason: Some("NotaryUnreachable"),
            ..round(
                "notary 503 to every fetch from the fifth on",
                Expect::FailsMaybePublished,
            )
        },
        Round {
            registry: vec![
                Rule::new(None, Action::Status(429))
                    .path("/manifests/")
                    .times(2),
            ],
            ..round("registry 429 twice", Expect::Survives)
        },
        Round {
            registry: vec![Rule::new(None, Action::Status(502)).path("/manifests/")],
            ..round("registry 502 once", Expect::Survives)
        },
        Round {
            registry: vec![
                Rule::new(None, Action::Status(503))
                    .path("/manifests/")
                    .times(100),
            ],
            reason: Some("RegistryUnreachable"),
            ..round("registry 503 until it clears", Expect::FailsUnpublished)
        },
        Round {
            registry: vec![Rule::new(Some("GET"), Action::Status(500)).path("/tags/list")],
            ..round("registry 500 to the tag list", Expect::Either)
        },
        Round {
            registry: vec![Rule::new(None, Action::CutAfterForward).path("/manifests/")],
            ..round("registry connection cut", Expect::Either)
        },
        Round {
            refuse_registry: true,
            reason: Some("RegistryUnreachable"),
            ..round("registry refuses connections", Expect::FailsUnpublished)
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_converge_with_nothing_lost() {
    let tb = Testbed::get();
    let ca = tb.ca_pem();
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    let notary = FaultProxy::start(tb.var("NOTARY_URL"), &ca, &cert, &key).await;
    let registry = FaultProxy::start(tb.var("REGISTRY_URL"), &ca, &cert, &key).await;
    // The image is named through the registry proxy; the seed pushes its images to the real
    // registry under the same repository path.
    let gun = tb
        .unique_gun("faults")
        .replacen(tb.var("REGISTRY_HOST"), &registry.host, 1);
    let seed = tb.seed_gun(&gun);
    let spec = spec(&gun, &notary.url, &["v1", "rc-*"]);
    tb.retag(&seed, "v1", "rc-base").await;
    let first = run_engine(TIMEOUT, &spec, creds(tb, &seed), None).await;
    assert_eq!(ready(&first).0, "True", "{:?}", ready(&first));
    let mut status = first.status;
    let mut expected: BTreeMap<String, String> = notary_list(tb, &gun, None);
    assert_eq!(expected["v1"], digest(&seed, "v1"));

    let sources = ["multi", "oci-v1", "oci-multi", "latest", "v1"];
    let mut survived = 0;
    let mut failed_runs = 0;
    for (i, r) in rounds().into_iter().enumerate() {
        let tag = format!("rc-{i}");
        let src = sources[i % sources.len()];
        tb.retag(&seed, src, &tag).await;
        for rule in &r.notary {
            notary.add(rule.clone());
        }
        for rule in &r.registry {
            registry.add(rule.clone());
        }
        notary.refuse(r.refuse_notary);
        registry.refuse(r.refuse_registry);
        let injected_before = notary.injected() + registry.injected();

        let o = run_engine(TIMEOUT, &spec, creds(tb, &seed), Some(&status)).await;
        let (st, reason, msg) = ready(&o);
        let injected = notary.injected() + registry.injected() - injected_before;
        notary.clear();
        registry.clear();
        assert!(injected > 0, "{}: the fault never struck", r.name);
        let listed = notary_list(tb, &gun, None);
        let landed = if st == "False" && listed.contains_key(&tag) {
            ", the publish landed before the failure"
        } else {
            ""
        };
        match r.expect {
            Expect::FailsUnpublished => {
                assert_eq!(st, "False", "{}: {reason}: {msg}", r.name);
                assert_eq!(listed, expected, "{}: a failed run published", r.name);
                assert_eq!(o.publishes.min(1), o.publishes, "{}", r.name);
            }
            Expect::FailsMaybePublished => {
                assert_eq!(st, "False", "{}: {reason}: {msg}", r.name)
            }
            Expect::Survives => assert_eq!(st, "True", "{}: {reason}: {msg}", r.name),
            Expect::Either => {}
        }
        if st == "False" {
            failed_runs += 1;
            if let Some(want) = r.reason {
                assert_eq!(reason, want, "{}: {msg}", r.name);
            }
            assert!(
                !msg.is_empty() && reason != "Signed",
                "{}: {reason}: {msg}",
                r.name
            );
        }
        for (t, d) in &expected {
            assert_eq!(listed.get(t), Some(d), "{}: tag {t} lost", r.name);
        }
        status = o.status;

        // The fault has cleared: the next run converges.
        let o = run_engine(TIMEOUT, &spec, creds(tb, &seed), Some(&status)).await;
        assert_eq!(
            ready(&o).0,
            "True",
            "{}: after the fault: {:?}",
            r.name,
            ready(&o)
        );
        status = o.status;
        expected.insert(tag.clone(), digest(&seed, src));
        let listed = notary_list(tb, &gun, None);
        assert_eq!(
            listed, expected,
            "{}: planned state after the fault",
            r.name
        );
        // And the run after that has nothing left to do.
        let o = run_engine(TIMEOUT, &spec, creds(tb, &seed), Some(&status)).await;
        assert_eq!(ready(&o).0, "True", "{}: {:?}", r.name, ready(&o));
        assert_eq!(o.publishes, 0, "{}: converged runs publish nothing", r.name);
        status = o.status;
        survived += 1;
        report(&format!(
            "fault survived: {} (first run: {st} {reason}, {injected} injected{landed})",
            r.name
        ));
    }
    report(&format!(
        "faults survived: {survived} ({failed_runs} runs failed under a fault and converged after it cleared; {} tags signed, none lost)",
        expected.len()
    ));
}
