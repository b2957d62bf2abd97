//! The GitHub Action (`action.yml`) run by the real runner: a workflow written for the seed
//! docker-sign Action, with only its `uses:` line changed, runs under `act` (nektos/act, on the
//! host: `-P ubuntu-latest=-self-hosted`, offline) against the testbed, with the built
//! `trustkeeper` on PATH; the notary Go client then lists what it signed. `actionlint` checks
//! the README's example workflows and the ones run here against `action.yml`'s inputs.
//! Needs the testbed (`TRUSTKEEPER_TESTBED`) and the referees (`TRUSTKEEPER_REFEREES`, or `ACT`
//! and `ACTIONLINT`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Seed, Testbed};

/// The `uses:` a seed user writes after switching; `act --local-repository` maps it to a copy
/// of this checkout's `action.yml`.
const USES: &str = "trustkeeper/trustkeeper@v1";

fn referee(var: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return p.into();
    }
    let dir = std::env::var("TRUSTKEEPER_REFEREES").unwrap_or_else(|_| {
        panic!(
            "neither {var} nor TRUSTKEEPER_REFEREES is set: run scripts/test.sh, or \
             `tests/support/referees.sh install DIR` and export TRUSTKEEPER_REFEREES=DIR"
        )
    });
    PathBuf::from(dir).join("bin").join(name)
}

fn action_yml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")
}

/// The secrets a seed workflow reads, by their names in the seed's README.
struct Secrets {
    key_pem: String,
    /// `None`: the workflow gives its own (a secret's value is masked wherever it shows).
    key_id: Option<String>,
    passphrase: String,
    /// `user:password` for the secret NOTARY_AUTH (the seed's `notary-auth`).
    notary_auth: Option<String>,
}

impl Secrets {
    fn delegation(seed: &Seed) -> Secrets {
        Secrets::of(
            seed.var("DELEGATION_KEY"),
            seed.var("DELEGATION_KEY_ID"),
            seed.var("DELEGATION_PASSPHRASE_FILE"),
        )
    }

    fn repository(seed: &Seed) -> Secrets {
        Secrets::of(
            seed.var("TARGETS_KEY"),
            seed.var("TARGETS_KEY_ID"),
            seed.var("TARGETS_PASSPHRASE_FILE"),
        )
    }

    fn of(key: &str, id: &str, pass_file: &str) -> Secrets {
        Secrets {
            key_pem: std::fs::read_to_string(key).unwrap(),
            key_id: Some(id.to_string()),
            passphrase: std::fs::read_to_string(pass_file)
                .unwrap()
                .trim()
                .to_string(),
            notary_auth: None,
        }
    }

    /// Every piece of them that must never reach the log: the passphrase and each line of the
    /// key's base64 body.
    fn must_not_show(&self) -> Vec<&str> {
        let mut v: Vec<&str> = (self.key_pem.lines())
            .filter(|l| l.len() >= 16 && !l.starts_with("-----") && !l.contains(": "))
            .collect();
        assert!(v.len() >= 3, "the key has a base64 body");
        v.push(&self.passphrase);
        if let Some((_, password)) = self.notary_auth.as_deref().and_then(|a| a.split_once(':')) {
            v.push(password);
        }
        v
    }
}

/// A seed workflow: the steps of the seed's README (sign, then use the outputs), with `with`.
fn seed_workflow(uses: &str, with: &[(&str, &str)]) -> String {
    let mut w = String::from(
        "name: Publish Docker image\n\
         on:\n  push:\n    tags:\n      - 'v*'\n\
         permissions:\n  contents: read\n\
         jobs:\n  push-to-registry:\n    name: Sign the image\n    runs-on: ubuntu-latest\n    steps:\n\
         \x20     - name: Sign and push docker image\n        id: sign\n",
    );
    w.push_str(&format!("        uses: {uses}\n        with:\n"));
    for (k, v) in with {
        w.push_str(&format!("          {k}: {v}\n"));
    }
    w.push_str(
        "      - name: Use the outputs\n        env:\n\
         \x20         DIGEST: ${{ steps.sign.outputs.digest }}\n\
         \x20         SIZE: ${{ steps.sign.outputs.size }}\n\
         \x20         ROLES: ${{ steps.sign.outputs.roles }}\n\
         \x20         SIGNED: ${{ steps.sign.outputs.signed }}\n\
         \x20         RENEWED: ${{ steps.sign.outputs.renewed }}\n\
         \x20       run: |\n\
         \x20         echo \"outputs: digest=$DIGEST size=$SIZE roles=$ROLES signed=$SIGNED renewed=$RENEWED\"\n",
    );
    w
}

/// The `with:` of a seed user's step for `image`: secrets by the seed README's names.
fn seed_with<'a>(image: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut with = vec![
        ("image-ref", image),
        ("private-key-id", "\"${{ secrets.DOCKER_PRIVATE_KEY_ID }}\""),
        ("private-key", "${{ secrets.DOCKER_PRIVATE_KEY }}"),
        (
            "private-key-passphrase",
            "${{ secrets.DOCKER_PRIVATE_KEY_PASSPHRASE }}",
        ),
    ];
    with.extend_from_slice(extra);
    with
}

struct Run {
    ok: bool,
    log: String,
}

/// Runs `workflow` under act on the host, offline, with the built trustkeeper on PATH, the
/// testbed's CA for the runner (as a self-hosted runner with a private CA has it) and a fresh
/// trust directory; the secrets come from act's environment (`-s NAME`), never an argument.
fn act(workflow: &str, secrets: &Secrets) -> Run {
    act_with(Testbed::get(), workflow, secrets, &Runner::default())
}

/// What the runner machine has besides the workflow.
#[derive(Default)]
struct Runner {
    /// `~/.docker/config.json`, as `docker/login-action` leaves it.
    docker_config: Option<String>,
    /// Configuration variables (`vars.NAME`), as `act --var-file` reads them.
    vars: Option<String>,
    /// No trustkeeper on PATH: the action must install one from the source beside its
    /// action.yml.
    without_trustkeeper: bool,
    /// That source, as (path, contents) under the action's directory; none by default.
    source: Vec<(String, String)>,
    /// act's cache (its tool cache is `DIR/tool_cache`), to share between runs; a fresh one by
    /// default.
    act_cache: Option<PathBuf>,
}

fn act_with(tb: &Testbed, workflow: &str, secrets: &Secrets, runner: &Runner) -> Run {
    // What runs is also what actionlint passes.
    let (ok, text) = actionlint(&[workflow.to_string()]);
    assert!(
        ok,
        "actionlint on the workflow act runs:\n{text}\n{workflow}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("workspace");
    let wf_dir = ws.join(".github/workflows");
    std::fs::create_dir_all(&wf_dir).unwrap();
    std::fs::write(wf_dir.join("sign.yml"), workflow).unwrap();
    // A repository, as a workflow's is (act reads its ref and revision).
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&ws)
        .status()
        .unwrap();
    assert!(git.success());
    // Only action.yml: the trustkeeper on PATH is used, nothing is built.
    let action = tmp.path().join("action");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::copy(action_yml(), action.join("action.yml")).unwrap();
    for (file, text) in &runner.source {
        let f = action.join(file);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_trustkeeper"))
        .parent()
        .unwrap();
    let system_path = std::env::var("PATH").unwrap_or_default();
    let path = if runner.without_trustkeeper {
        (system_path.split(':'))
            .filter(|d| !Path::new(d).join("trustkeeper").exists())
            .collect::<Vec<_>>()
            .join(":")
    } else {
        format!("{}:{system_path}", bin.display())
    };
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    if let Some(config) = &runner.docker_config {
        std::fs::write(home.join(".docker/config.json"), config).unwrap();
    }
    let mut c = Command::new(referee("ACT", "act"));
    c.current_dir(&ws)
        .args(["push", "-P", "ubuntu-latest=-self-hosted", "-W"])
        .arg(wf_dir.join("sign.yml"))
        .args([
            "--action-offline-mode",
            "--no-cache-server",
            "--local-repository",
        ])
        .arg(format!("{USES}={}", action.display()))
        .arg("--action-cache-path")
        .arg((runner.act_cache.clone()).unwrap_or_else(|| tmp.path().join("act-cache")))
        .args([
            "-s",
            "DOCKER_PRIVATE_KEY",
            "-s",
            "DOCKER_PRIVATE_KEY_PASSPHRASE",
        ])
        .arg("--env")
        .arg(format!("TRUSTKEEPER_CA_FILE={}", tb.var("CA_CERT")))
        .arg("--env")
        .arg(format!(
            "TRUSTKEEPER_TRUST_DIR={}",
            tmp.path().join("trust").display()
        ))
        .env("PATH", path)
        .env("HOME", &home)
        // rustup's cargo under the runner's own HOME.
        .env("RUSTUP_HOME", rust_home("RUSTUP_HOME", ".rustup"))
        .env("CARGO_HOME", rust_home("CARGO_HOME", ".cargo"))
        .env("DOCKER_PRIVATE_KEY", &secrets.key_pem)
        .env("DOCKER_PRIVATE_KEY_PASSPHRASE", &secrets.passphrase);
    if let Some(vars) = &runner.vars {
        let f = tmp.path().join("vars");
        std::fs::write(&f, vars).unwrap();
        c.arg("--var-file").arg(f);
    }
    if let Some(auth) = &secrets.notary_auth {
        c.args(["-s", "NOTARY_AUTH"]).env("NOTARY_AUTH", auth);
    }
    if let Some(id) = &secrets.key_id {
        c.args(["-s", "DOCKER_PRIVATE_KEY_ID"])
            .env("DOCKER_PRIVATE_KEY_ID", id);
    }
    // Nothing of the test's own environment may stand in for the action's inputs.
    for (k, _) in std::env::vars() {
        if k.starts_with("TRUSTKEEPER_") || k == "DOCKER_CONTENT_TRUST_SERVER" {
            c.env_remove(k);
        }
    }
    let started = std::time::Instant::now();
    let out = c.output().expect("run act");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("act ran in {:?}", started.elapsed());
    for s in secrets.must_not_show() {
        assert!(
            !log.contains(s),
            "a secret ({} characters) is in act's output",
            s.len()
        );
    }
    Run {
        ok: out.status.success(),
        log,
    }
}

/// Where rustup keeps its toolchains and cargo its registry: `var`, or `~/DIR` of the real HOME.
fn rust_home(var: &str, dir: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(dir))
}

/// The `outputs:` line the workflow's second step prints.
fn outputs_line(log: &str) -> &str {
    log.lines()
        .find_map(|l| l.split_once("| outputs: ").map(|(_, o)| o))
        .unwrap_or_else(|| panic!("no outputs line in:\n{log}"))
}

#[test]
fn seed_workflow_with_private_key_name_signs_into_the_delegation() {
    let tb = Testbed::get();
    let seed = tb.seed("action-delegation");
    // A manifest list, as the seed's `sign-manifest: true` users push with buildx.
    let image = format!("\"{}:multi\"", seed.gun);
    let server = format!("\"{}\"", tb.var("NOTARY_URL"));
    let wf = seed_workflow(
        USES,
        &seed_with(
            &image,
            &[
                ("private-key-name", "ci-bot"),
                ("sign-manifest", "true"),
                ("notary-server", &server),
            ],
        ),
    );
    let run = act(&wf, &Secrets::delegation(&seed));
    assert!(run.ok, "the workflow failed:\n{}", run.log);
    // The signer's role, and targets/releases where docker reads it (as `docker trust sign`).
    for role in ["targets/ci-bot", "targets/releases"] {
        let listed = tb.notary_list(&seed.gun, Some(role));
        let row = listed.get("multi").expect("multi listed");
        assert_eq!(row.sha256, seed.digest("multi"), "{role}");
        assert_eq!(row.size.to_string(), seed.var("TAG_MULTI_SIZE"), "{role}");
        assert_eq!(row.role, role);
    }
    assert_eq!(
        outputs_line(&run.log),
        format!(
            "digest=sha256:{} size={} roles=targets/ci-bot,targets/releases signed=true renewed=",
            seed.digest("multi"),
            seed.var("TAG_MULTI_SIZE")
        )
    );
}

#[test]
fn seed_workflow_without_private_key_name_signs_into_targets_with_the_repository_key() {
    let tb = Testbed::get();
    let seed = tb.seed("action-targets");
    let image = format!("\"{}:oci-multi\"", seed.gun);
    let server = format!("\"{}\"", tb.var("NOTARY_URL"));
    let wf = seed_workflow(USES, &seed_with(&image, &[("notary-server", &server)]));
    let run = act(&wf, &Secrets::repository(&seed));
    assert!(run.ok, "the workflow failed:\n{}", run.log);
    let listed = tb.notary_list(&seed.gun, Some("targets"));
    let row = listed.get("oci-multi").expect("oci-multi listed");
    assert_eq!(row.sha256, seed.digest("oci-multi"));
    assert_eq!(row.role, "targets");
    assert_eq!(
        outputs_line(&run.log),
        format!(
            "digest=sha256:{} size={} roles=targets signed=true renewed=",
            seed.digest("oci-multi"),
            seed.var("TAG_OCI_MULTI_SIZE")
        )
    );
}

#[test]
fn a_wrong_private_key_id_fails_the_workflow_naming_both_ids() {
    let tb = Testbed::get();
    let seed = tb.seed("action-wrong-id");
    let image = format!("\"{}:multi\"", seed.gun);
    let server = format!("\"{}\"", tb.var("NOTARY_URL"));
    // The repository key's ID given with the delegation key: the seed's "tuf: data has no
    // signatures" mix-up. Literally, not from a secret: the runner masks a secret's value
    // wherever it appears, this message included.
    let wrong_id = format!("\"{}\"", seed.var("TARGETS_KEY_ID"));
    let mut with = seed_with(
        &image,
        &[
            ("private-key-name", "ci-bot"),
            ("sign-manifest", "true"),
            ("notary-server", &server),
        ],
    );
    with[1].1 = &wrong_id;
    let wf = seed_workflow(USES, &with);
    let mut secrets = Secrets::delegation(&seed);
    secrets.key_id = None;
    let run = act(&wf, &secrets);
    assert!(!run.ok, "the workflow passed:\n{}", run.log);
    let line = run
        .log
        .lines()
        .find(|l| l.contains(seed.var("TARGETS_KEY_ID")))
        .unwrap_or_else(|| panic!("no message names the given ID:\n{}", run.log));
    assert!(
        line.contains(seed.var("DELEGATION_KEY_ID")),
        "the message does not name the key's own ID: {line}"
    );
    assert!(
        !run.log.contains("| outputs: "),
        "the step after a failed signing ran"
    );
    for role in ["targets/ci-bot", "targets/releases"] {
        let listed = tb.notary_list(&seed.gun, Some(role));
        assert!(!listed.contains_key("multi"), "multi signed in {role}");
    }
}

/// The ```yaml blocks of the README's "GitHub Action" section that are workflows.
fn readme_workflows() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## GitHub Action\n")
        .nth(1)
        .expect("README has a \"GitHub Action\" section");
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<String> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap().to_string())
        .filter(|b| b.contains("\njobs:"))
        .collect();
    assert!(!blocks.is_empty(), "no example workflow in the section");
    blocks
}

/// actionlint over `workflows` in a project whose root holds `action.yml`, each `uses:` of
/// the action pointing at it (`./`), so that their `with:` is checked against its inputs.
fn actionlint(workflows: &[String]) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".github/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(action_yml(), tmp.path().join("action.yml")).unwrap();
    // actionlint resolves `uses: ./` from the repository's root: without one it checks nothing.
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(tmp.path())
        .status()
        .unwrap();
    assert!(git.success());
    let mut files = Vec::new();
    for (i, w) in workflows.iter().enumerate() {
        let local: String = w
            .lines()
            .map(|l| match l.split_once("uses: ") {
                Some((indent, u)) if u.contains("/trustkeeper@") => format!("{indent}uses: ./\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(local.contains("uses: ./\n"), "no trustkeeper step in:\n{w}");
        let f = dir.join(format!("example-{i}.yml"));
        std::fs::write(&f, local).unwrap();
        files.push(f);
    }
    let out = Command::new(referee("ACTIONLINT", "actionlint"))
        .current_dir(tmp.path())
        .args(["-no-color"])
        .args(&files)
        .output()
        .expect("run actionlint");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn actionlint_passes_the_readme_examples() {
    // (Each workflow act runs here is linted first, in `act_with`.)
    let workflows = readme_workflows();
    let (ok, text) = actionlint(&workflows);
    assert!(
        ok,
        "actionlint on {} README examples:\n{text}",
        workflows.len()
    );

    // It checks the inputs against action.yml: a misspelt input and a missing required one
    // are found.
    let typo = seed_workflow(
        USES,
        &seed_with(
            "\"registry.example.com/team/app:v1\"",
            &[("private-key-nmae", "ci-bot")],
        ),
    );
    let (ok, text) = actionlint(&[typo]);
    assert!(
        !ok && text.contains("input \"private-key-nmae\" is not defined"),
        "{text}"
    );
    let missing = seed_workflow(USES, &[("image-ref", "registry.example.com/team/app:v1")]);
    let (ok, text) = actionlint(&[missing]);
    assert!(
        !ok && text.contains("missing input \"private-key\""),
        "{text}"
    );
}

#[test]
fn notary_auth_reaches_a_token_notary_and_renew_re_signs_the_roles() {
    use base64::Engine as _;
    let tb = Testbed::token();
    let seed = tb.seed("action-token");
    let user_password = format!("{}:{}", tb.var("TOKEN_USER"), tb.var("TOKEN_PASSWORD"));
    // The registry's credentials as docker/login-action writes them; the notary's only in
    // notary-auth.
    let docker_config = serde_json::json!({"auths": {tb.var("REGISTRY_HOST"): {
        "auth": base64::engine::general_purpose::STANDARD.encode(&user_password)
    }}})
    .to_string();
    let image = format!("\"{}:multi\"", seed.gun);
    let server = format!("\"{}\"", tb.var("NOTARY_URL"));
    let wf = seed_workflow(
        USES,
        &seed_with(
            &image,
            &[
                ("private-key-name", "ci-bot"),
                ("sign-manifest", "true"),
                ("notary-server", &server),
                ("notary-auth", "${{ secrets.NOTARY_AUTH }}"),
                ("renew", "true"),
            ],
        ),
    );
    let runner = Runner {
        docker_config: Some(docker_config),
        ..Default::default()
    };
    let mut secrets = Secrets::delegation(&seed);
    secrets.notary_auth = Some(format!("{}:wrong", tb.var("TOKEN_USER")));
    let run = act_with(tb, &wf, &secrets, &runner);
    assert!(!run.ok, "a wrong notary-auth signed:\n{}", run.log);
    assert!(run.log.contains("Unauthorized"), "{}", run.log);

    secrets.notary_auth = Some(user_password);
    let run = act_with(tb, &wf, &secrets, &runner);
    assert!(run.ok, "the workflow failed:\n{}", run.log);
    let listed = tb.notary_list(&seed.gun, Some("targets/ci-bot"));
    assert_eq!(listed["multi"].sha256, seed.digest("multi"));
    assert_eq!(
        outputs_line(&run.log),
        format!(
            "digest=sha256:{} size={} roles=targets/ci-bot,targets/releases signed=true \
             renewed=targets/ci-bot,targets/releases",
            seed.digest("multi"),
            seed.var("TAG_MULTI_SIZE")
        )
    );
}

#[test]
fn without_trustkeeper_on_path_or_its_source_the_action_says_what_to_install() {
    let tb = Testbed::get();
    let seed = tb.seed("action-no-binary");
    let image = format!("\"{}:multi\"", seed.gun);
    let wf = seed_workflow(USES, &seed_with(&image, &[("private-key-name", "ci-bot")]));
    let runner = Runner {
        without_trustkeeper: true,
        ..Default::default()
    };
    let run = act_with(tb, &wf, &Secrets::delegation(&seed), &runner);
    assert!(!run.ok, "the workflow passed:\n{}", run.log);
    assert!(
        run.log.contains("no trustkeeper on PATH and no source in"),
        "{}",
        run.log
    );
    assert!(
        !tb.notary_list(&seed.gun, Some("targets/ci-bot"))
            .contains_key("multi")
    );
}

/// A key that is not a secret of the workflow (here a configuration variable) gets no masking
/// from the runner: the action's own masks, line by line, keep it out of every later line of
/// the log, a step that prints the key file included.
#[test]
fn a_key_that_is_no_secret_is_masked_by_the_action() {
    let tb = Testbed::get();
    let seed = tb.seed("action-mask");
    let mut secrets = Secrets::delegation(&seed);
    secrets.key_id = None;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &secrets.key_pem).unwrap();
    let wf = format!(
        "name: Sign\n\
         on: push\n\
         jobs:\n  sign:\n    runs-on: ubuntu-latest\n    steps:\n\
         \x20     - id: sign\n\
         \x20       uses: {USES}\n\
         \x20       with:\n\
         \x20         image-ref: \"{gun}:multi\"\n\
         \x20         private-key: ${{{{ vars.SIGNING_KEY }}}}\n\
         \x20         private-key-passphrase: ${{{{ secrets.DOCKER_PRIVATE_KEY_PASSPHRASE }}}}\n\
         \x20         private-key-name: ci-bot\n\
         \x20         notary-server: \"{notary}\"\n\
         \x20     - run: cat {file}\n",
        file = key_file.path().display(),
        gun = seed.gun,
        notary = tb.var("NOTARY_URL"),
    );
    let runner = Runner {
        vars: Some(format!("SIGNING_KEY=\"{}\"\n", secrets.key_pem.trim_end())),
        ..Default::default()
    };
    let run = act_with(tb, &wf, &secrets, &runner);
    assert!(run.ok, "the workflow failed:\n{}", run.log);
    // The log would show the key: the last step printed the file, armour and headers unmasked.
    assert!(
        run.log.contains("| -----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "the key file was not printed:\n{}",
        run.log
    );
    assert_eq!(
        tb.notary_list(&seed.gun, Some("targets/ci-bot"))["multi"].sha256,
        seed.digest("multi")
    );
}

/// The source of a `trustkeeper` that runs the one this test built, laid out as the
/// repository is (what the action hashes for its tool-cache key): it builds in a second where
/// the real one takes a release build of every dependency.
fn stand_in_source() -> Vec<(String, String)> {
    let real = env!("CARGO_BIN_EXE_trustkeeper");
    vec![
        (
            "Cargo.toml".into(),
            "[package]\nname = \"trustkeeper\"\nversion = \"0.0.1\"\nedition = \"2024\"\n".into(),
        ),
        (
            "Cargo.lock".into(),
            "version = 4\n\n[[package]]\nname = \"trustkeeper\"\nversion = \"0.0.1\"\n".into(),
        ),
        ("build.rs".into(), "fn main() {}\n".into()),
        ("crates/README".into(), "the workspace's crates\n".into()),
        (
            "src/main.rs".into(),
            format!(
                "fn main() {{\n    let s = std::process::Command::new({real:?})\n        \
                 .args(std::env::args_os().skip(1))\n        .status()\n        \
                 .expect(\"run trustkeeper\");\n    std::process::exit(s.code().unwrap_or(1));\n}}\n"
            ),
        ),
    ]
}

#[test]
fn without_trustkeeper_on_path_the_action_builds_its_own_source_once_into_the_tool_cache() {
    let tb = Testbed::get();
    let seed = tb.seed("action-install");
    let image = format!("\"{}:multi\"", seed.gun);
    let server = format!("\"{}\"", tb.var("NOTARY_URL"));
    let wf = seed_workflow(
        USES,
        &seed_with(
            &image,
            &[("private-key-name", "ci-bot"), ("notary-server", &server)],
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let runner = Runner {
        without_trustkeeper: true,
        source: stand_in_source(),
        act_cache: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let secrets = Secrets::delegation(&seed);
    let tool_cache = cache.path().join("tool_cache/trustkeeper");

    let first = act_with(tb, &wf, &secrets, &runner);
    assert!(first.ok, "the first run failed:\n{}", first.log);
    assert!(
        first.log.contains("trustkeeper: building 0.0.1 ("),
        "{}",
        first.log
    );
    let installed: Vec<_> = std::fs::read_dir(&tool_cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        matches!(&installed[..], [v] if v.starts_with("0.0.1-")),
        "{installed:?}"
    );
    assert_eq!(
        tb.notary_list(&seed.gun, Some("targets/ci-bot"))["multi"].sha256,
        seed.digest("multi")
    );
    assert!(outputs_line(&first.log).contains(" signed=true"));

    // The second run of the same ref finds the build: nothing is built again.
    let second = act_with(tb, &wf, &secrets, &runner);
    assert!(second.ok, "the second run failed:\n{}", second.log);
    assert!(
        !second.log.contains("trustkeeper: building"),
        "{}",
        second.log
    );
    assert!(
        second.log.contains(&format!(
            "trustkeeper: using {}/{}/",
            tool_cache.display(),
            installed[0]
        )),
        "{}",
        second.log
    );
    assert!(outputs_line(&second.log).contains(" signed=false"));
}
