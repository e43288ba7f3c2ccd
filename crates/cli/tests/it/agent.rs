//! `keyway` installed as `aws_secretsmanager_agent`, with the agent's own configuration file and command line,
//! against moto: the requests and answers of the agent's own tests (`aws_secretsmanager_agent/src/main.rs`) and
//! of its black-box suite (`integration-tests/`: tokens, forwarding, `/ping`, path style, `refreshNow` after a
//! rotation, `ttl_seconds = 0`, versions), status and body to the byte.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyway_testkit::Moto;
use keyway_testkit::raw::{self, Target};

/// The agent's unit tests' token.
const TOKEN: &str = "xyzzy";

/// `keyway` as `aws_secretsmanager_agent` (a symlink in a directory of its own, where it writes `logs/`).
struct Agent {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Agent {
    fn target(&self) -> Target {
        Target::Tcp(self.addr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under the agent's name, in `dir`.
fn agent_binary(dir: &std::path::Path) -> PathBuf {
    let link = dir.join("aws_secretsmanager_agent");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keyway"), &link).unwrap();
    }
    link
}

/// The agent's environment: moto as every AWS endpoint, its test keys, the token.
fn agent_command(dir: &std::path::Path, moto: &Moto) -> Command {
    let mut command = Command::new(agent_binary(dir));
    command
        .current_dir(dir)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_TOKEN", TOKEN)
        .env_remove("AWS_PROFILE")
        .env_remove("KEYWAY_CONFIG")
        .env_remove("KEYWAY_LOG")
        .stdin(Stdio::null());
    command
}

/// Starts the agent with `config` (TOML; `http_port = 0` is added when it names none) and reads its first line.
fn start(moto: &Moto, config: &str) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    let config = if config.contains("http_port") {
        config.to_owned()
    } else {
        format!("http_port = 0\n{config}")
    };
    std::fs::write(&file, config).unwrap();
    let mut child = agent_command(dir.path(), moto)
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    // The agent's own line is `Agent/2.1.0 listening on http://127.0.0.1:2773`; its test harness waits for
    // `listening on`.
    let Some(addr) = first
        .split_once(" listening on http://")
        .filter(|(who, _)| who.starts_with("Keyway/"))
        .map(|(_, addr)| addr.parse().unwrap())
    else {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the agent did not start: {first:?} {err}");
    };
    Agent { child, addr, dir }
}

fn get(agent: &Agent, uri: &str, headers: &[&str]) -> raw::RawReply {
    raw::get(&agent.target(), uri, headers)
}

fn with_token() -> String {
    format!("X-Aws-Parameters-Secrets-Token: {TOKEN}")
}

/// Status and body as text.
fn answer(reply: &raw::RawReply) -> (u16, String) {
    (reply.status, reply.text())
}

/// MyTest (three versions: AWSPREVIOUS, AWSCURRENT, AWSPENDING) and My/Test in moto, and the agent on it.
struct MyTest {
    moto: Moto,
    agent: Agent,
    arn: String,
    current: String,
    pending: String,
}

fn my_test() -> MyTest {
    let moto = Moto::start();
    let arn = moto.create_secret("MyTest", "hunter2");
    let current = moto.put_secret_value("MyTest", "hunter3");
    let pending = moto.call(
        "PutSecretValue",
        &serde_json::json!({"SecretId": "MyTest", "SecretString": "pending-value", "VersionStages": ["AWSPENDING"]}),
    );
    assert_eq!(pending.status, 200, "{}", pending.body);
    let pending = pending.json()["VersionId"].as_str().unwrap().to_owned();
    moto.create_secret("My/Test", "slashed");
    let agent = start(&moto, "");
    MyTest {
        moto,
        agent,
        arn,
        current,
        pending,
    }
}

#[test]
fn tokens_forwarding_and_ping_as_the_agents_tests_expect() {
    let setup = my_test();
    let agent = &setup.agent;
    let token = with_token();
    let token = token.as_str();
    let vault = format!("X-Vault-Token: {TOKEN}");
    // ping_req, ping_no_token; /ping needs no token and is not refused for forwarding.
    for headers in [&[token][..], &[], &["X-Forwarded-For: 54.239.28.85"]] {
        assert_eq!(
            answer(&get(agent, "/ping", headers)),
            (200, "healthy".into())
        );
    }
    // pong_req; no_token_fail, path_no_token_fail, bad_token (every path but /ping); xff_fail.
    assert_eq!(
        answer(&get(agent, "/pong", &[token])),
        (404, "Not found".into())
    );
    for uri in [
        "/secretsmanager/get?secretId=MyTest",
        "/v1/MyTest",
        "/pong",
        "/ping/",
    ] {
        assert_eq!(
            answer(&get(agent, uri, &[])),
            (403, "Bad Token".into()),
            "{uri}"
        );
        assert_eq!(
            answer(&get(agent, uri, &["X-Vault-Token: click slipers"])),
            (403, "Bad Token".into())
        );
    }
    assert_eq!(
        answer(&get(
            agent,
            "/secretsmanager/get?secretId=MyTest",
            &[&vault, "X-Forwarded-For: 54.239.28.85"]
        )),
        (400, "Forwarded".into())
    );
    // Every configured header is tried.
    let both = get(
        agent,
        "/secretsmanager/get?secretId=MyTest",
        &["X-Aws-Parameters-Secrets-Token: wrong", &vault],
    );
    assert_eq!(both.status, 200, "{}", both.text());
}

#[test]
fn parameters_are_read_and_refused_with_the_agents_words() {
    let setup = my_test();
    let agent = &setup.agent;
    let token = with_token();
    let token = token.as_str();
    // missing_id, missing_path_id, bad_query_parameter, path_bad_query_parameter, missing_query_parameter,
    // role_arn_invalid.
    for (uri, body) in [
        ("/secretsmanager/get", "missing parameter secretId"),
        ("/v1/", "missing secret ID"),
        (
            "/secretsmanager/get?secretId=MyTest&versionStage=AWSPENDING&abc=XXXXXXXXXXXX",
            "unknown parameter: abc",
        ),
        (
            "/v1/MyTest?versionStage=AWSPENDING&abc=XXXXXXXXXXXX",
            "unknown parameter: abc",
        ),
        (
            "/secretsmanager/get?versionStage=AWSPENDING",
            "missing parameter secretId",
        ),
        (
            "/secretsmanager/get?secretId=MyTest&refreshNow=yes",
            "invalid refreshNow value",
        ),
        (
            "/secretsmanager/get?secretId=MyTest&roleArn=not-a-valid-arn",
            "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>",
        ),
    ] {
        let reply = get(agent, uri, &[token]);
        assert_eq!(answer(&reply), (400, body.into()), "{uri}");
        assert_eq!(
            reply.header("content-type"),
            None,
            "the agent labels no body"
        );
    }
}

#[test]
fn secrets_and_upstream_errors_have_the_agents_bodies() {
    let setup = my_test();
    let (agent, arn, current, pending) = (&setup.agent, &setup.arn, &setup.current, &setup.pending);
    let token = with_token();
    let token = token.as_str();
    let vault = format!("X-Vault-Token: {TOKEN}");
    // basic_success, basic_refresh_success.
    for uri in [
        "/secretsmanager/get?secretId=MyTest",
        "/secretsmanager/get?secretId=MyTest&refreshNow=1",
    ] {
        let reply = get(agent, uri, &[token]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // serde_json's map sorts; the order on the wire is the agent's (checked in keyway-api's tests).
        assert_eq!(
            keys,
            [
                "ARN",
                "CreatedDate",
                "Name",
                "SecretString",
                "VersionId",
                "VersionStages"
            ]
        );
        assert_eq!(body["ARN"], arn.as_str());
        assert_eq!(body["Name"], "MyTest");
        assert_eq!(body["VersionId"], current.as_str());
        assert_eq!(body["SecretString"], "hunter3");
        assert_eq!(body["VersionStages"], serde_json::json!(["AWSCURRENT"]));
        let created = body["CreatedDate"].as_str().unwrap();
        assert!(
            created.parse::<f64>().is_ok() && !created.ends_with(".0"),
            "{created}"
        );
        assert!(reply.text().starts_with(r#"{"ARN":"#), "{}", reply.text());
    }
    // pending_success, version_success, all_args_success; path_success and path_pending_success.
    let pending_reply = get(
        agent,
        "/secretsmanager/get?secretId=MyTest&versionStage=AWSPENDING",
        &[token],
    );
    assert_eq!(
        pending_reply.json()["VersionStages"],
        serde_json::json!(["AWSPENDING"])
    );
    assert_eq!(pending_reply.json()["SecretString"], "pending-value");
    let by_id = get(
        agent,
        &format!("/secretsmanager/get?secretId=MyTest&versionId={pending}"),
        &[token],
    );
    assert_eq!(by_id.json()["VersionId"], pending.as_str());
    let all = get(
        agent,
        &format!(
            "/secretsmanager/get?secretId=MyTest&versionStage=AWSPENDING&versionId={pending}&refreshNow=true"
        ),
        &[token],
    );
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.json()["SecretString"], "pending-value");
    let path = get(agent, "/v1/MyTest", &[&vault]);
    assert_eq!(path.json()["SecretString"], "hunter3");
    let slashed = get(
        agent,
        "/v1/My/Test?versionStage=AWSCURRENT&refreshNow=0",
        &[token],
    );
    assert_eq!(slashed.json()["Name"], "My/Test");
}

#[test]
fn upstream_errors_keep_secrets_managers_status_code_and_message() {
    let setup = my_test();
    let (moto, agent, pending) = (&setup.moto, &setup.agent, &setup.pending);
    let token = with_token();
    let token = token.as_str();
    // An error AWS answers keeps AWS's status, code and message (here moto's).
    let missing = get(agent, "/secretsmanager/get?secretId=NoSuchSecret", &[token]);
    let upstream = moto.call(
        "GetSecretValue",
        &serde_json::json!({"SecretId": "NoSuchSecret"}),
    );
    assert_eq!(missing.status, upstream.status);
    assert_eq!(
        missing.json(),
        serde_json::json!({"__type": "ResourceNotFoundException", "message": upstream.json()["message"]})
    );
    // A version id and a stage that name different versions: Secrets Manager's answer, passed on.
    let mismatch = get(
        agent,
        &format!("/secretsmanager/get?secretId=MyTest&versionStage=AWSCURRENT&versionId={pending}"),
        &[token],
    );
    assert_eq!(
        mismatch.json()["__type"],
        "InvalidRequestException",
        "{}",
        mismatch.text()
    );
}

#[test]
fn every_method_but_get_is_refused_after_the_token() {
    let setup = my_test();
    let agent = &setup.agent;
    let token = with_token();
    let token = token.as_str();
    // get_only: every other method, /ping too, after the token.
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"] {
        for uri in ["/secretsmanager/get?secretId=MyTest", "/v1/MyTest", "/ping"] {
            let request = raw::request(method, uri, &[token], b"");
            let reply = raw::exchange(&agent.target(), &request);
            assert_eq!(
                answer(&reply),
                (405, "Not allowed".into()),
                "{method} {uri}"
            );
        }
    }
    let head = raw::exchange(&agent.target(), &raw::request("HEAD", "/ping", &[], b""));
    assert_eq!(head.status, 405);
    // Method after token: a POST without one is refused for the token.
    let post = raw::exchange(&agent.target(), &raw::request("POST", "/nothing", &[], b""));
    assert_eq!(answer(&post), (403, "Bad Token".into()));
}

#[test]
fn past_max_conn_requests_are_answered_429_and_probes_have_two_more() {
    let moto = Moto::start();
    moto.create_secret("MyTest", "hunter2");
    let agent = start(&moto, "max_conn = 1\n");
    let token = with_token();
    let idle = |n: usize| -> Vec<TcpStream> {
        let held: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(agent.addr).unwrap())
            .collect();
        // Counted when accepted.
        std::thread::sleep(Duration::from_millis(200));
        held
    };
    let one = idle(1);
    assert_eq!(
        answer(&get(
            &agent,
            "/secretsmanager/get?secretId=MyTest",
            &[&token]
        )),
        (429, "Connection limit exceeded".into())
    );
    // Before the token: no token, still 429.
    assert_eq!(get(&agent, "/v1/MyTest", &[]).status, 429);
    assert_eq!(answer(&get(&agent, "/ping", &[])), (200, "healthy".into()));
    let two = idle(1);
    assert_eq!(get(&agent, "/ping", &[]).status, 200);
    let three = idle(1);
    assert_eq!(
        answer(&get(&agent, "/ping", &[])),
        (429, "Connection limit exceeded".into())
    );
    drop((one, two, three));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get(&agent, "/secretsmanager/get?secretId=MyTest", &[&token]).status,
        200
    );
}

#[test]
fn refresh_now_after_a_rotation_is_fresh_or_the_upstreams_error() {
    let mut moto = Moto::start();
    moto.create_secret("rotated", "before");
    let agent = start(&moto, "ttl_seconds = 300\n");
    let token = with_token();
    let read = |query: &str| {
        get(
            &agent,
            &format!("/secretsmanager/get?secretId=rotated{query}"),
            &[&token],
        )
    };
    assert_eq!(read("").json()["SecretString"], "before");
    moto.put_secret_value("rotated", "after");
    // Cached, as the agent's test_refresh_now_on_updated_secret_succeeds expects, until refreshNow.
    assert_eq!(read("").json()["SecretString"], "before");
    let fresh = read("&refreshNow=true");
    assert_eq!(fresh.json()["SecretString"], "after");
    assert_eq!(
        fresh.json()["VersionStages"],
        serde_json::json!(["AWSCURRENT"])
    );
    assert_eq!(read("").json()["SecretString"], "after");
    // The upstream goes away: a cached read still answers, a refresh answers the failure and keeps the cache.
    moto.stop();
    assert_eq!(read("").json()["SecretString"], "after");
    let failed = read("&refreshNow=true");
    assert_eq!(
        (failed.status, failed.json()),
        (
            502,
            serde_json::json!({"__type": "ConnectionError", "message": "Read Error"})
        )
    );
    assert_eq!(read("").json()["SecretString"], "after");
}

#[test]
fn ttl_zero_sees_every_version() {
    let moto = Moto::start();
    moto.create_secret("ttl0", "one");
    let agent = start(&moto, "ttl_seconds = 0\n");
    let token = with_token();
    let read = || get(&agent, "/secretsmanager/get?secretId=ttl0", &[&token]).json();
    assert_eq!(read()["SecretString"], "one");
    let version = moto.put_secret_value("ttl0", "two");
    let after = read();
    assert_eq!(
        (after["SecretString"].as_str(), after["VersionId"].as_str()),
        (Some("two"), Some(version.as_str()))
    );
}

/// Runs the agent's command line to its failure: exit status and stderr.
fn fails(
    moto: &Moto,
    args: &[&str],
    config: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = agent_command(dir.path(), moto);
    if let Some(config) = config {
        std::fs::write(dir.path().join("agent.toml"), config).unwrap();
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_agents_command_line_and_start_failures() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let program = agent_binary(dir.path());
    let usage =
        |program: &std::path::Path| format!("Usage: {} [--config <file>]\n", program.display());
    let (code, err) = fails(&moto, &["--help"], None, &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("Usage: ") && err.ends_with("aws_secretsmanager_agent [--config <file>]\n"),
        "{err}"
    );
    let out = Command::new(&program).arg("-x").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("Unknown option -x\n{}", usage(&program))
    );
    let out = Command::new(&program).arg("--config").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("Argument expected\n{}", usage(&program))
    );
    assert_eq!(
        fails(&moto, &["-c", "NoSuchFile"], None, &[]),
        (
            Some(1),
            "configuration file \"NoSuchFile\" not found\n".into()
        )
    );
    // config_file_with_unrecognized_override.toml
    let (code, err) = fails(
        &moto,
        &["--config", "agent.toml"],
        Some("max_connections = \"1001\"\n"),
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("unknown field `max_connections`, expected one of `log_level`"),
        "{err}"
    );
    // no_token_env, and a token file that is not there.
    let (code, err) = fails(
        &moto,
        &["--config", "agent.toml"],
        Some("ssrf_env_variables = [\"FAIL_TOKEN\"]\nhttp_port = 0\n"),
        &[],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            Some(1),
            "Could not read SSRF token variable(s) [\"FAIL_TOKEN\"]: environment variable not found\n"
        )
    );
    let (_, err) = fails(
        &moto,
        &["--config", "agent.toml"],
        Some("http_port = 0\n"),
        &[("AWS_TOKEN", "file:///nonexistent")],
    );
    assert_eq!(
        err,
        "Could not read SSRF token variable(s) [\"AWS_TOKEN\", \"AWS_SESSION_TOKEN\", \"AWS_CONTAINER_AUTHORIZATION_TOKEN\"]: No such file or directory (os error 2)\n"
    );
    // port_in_use
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (code, err) = fails(
        &moto,
        &["--config", "agent.toml"],
        Some(&format!("http_port = {port}\n")),
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "Could not bind to 127.0.0.1:{port}: Address already in use"
        )),
        "{err}"
    );
    // validate_credentials: credentials STS refuses stop the start (moto's STS takes any key, so none at all).
    let (code, err) = fails(
        &moto,
        &["--config", "agent.toml"],
        Some("http_port = 0\nignore_transient_errors = false\n"),
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("Error: no AWS credentials found"), "{err}");
}

#[test]
fn the_log_goes_where_the_agent_writes_it() {
    let moto = Moto::start();
    moto.create_secret("logged", "log-canary-value");
    let agent = start(&moto, "log_level = \"DEBUG\"\n");
    let reply = get(
        &agent,
        "/secretsmanager/get?secretId=logged",
        &[&with_token()],
    );
    assert_eq!(reply.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log =
        std::fs::read_to_string(agent.dir.path().join("logs/secrets_manager_agent.log")).unwrap();
    assert!(log.contains("listening on http://"), "{log}");
    assert!(!log.contains("log-canary-value"), "no value in the log");
}

#[test]
fn keyway_serve_reads_the_agents_file_and_prints_its_line_first() {
    let moto = Moto::start();
    moto.create_secret("served", "served-value");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        "http_port = 0\nvalidate_credentials = false\nttl_seconds = 60\n",
    )
    .unwrap();
    let template = agent_command(dir.path(), &moto);
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .current_dir(dir.path())
        .envs(
            template
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .args([
            "--daemon",
            "never",
            "serve",
            "--aws-agent-config",
            "agent.toml",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let Some((_, addr)) = first.split_once(" listening on http://") else {
        panic!("{first}")
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let reply = raw::get(
        &Target::Tcp(addr),
        "/secretsmanager/get?secretId=served",
        &[&with_token()],
    );
    assert_eq!(reply.json()["SecretString"], "served-value");
    let _ = child.kill();
    let _ = child.wait();
}

/// The Parameters and Secrets Lambda Extension's Parameter Store route, against its own answers as captured from
/// the real extension (`data/lambda_extension_responses.json`, source named there): the same parameters made in
/// moto, the same requests, the same bodies (keys in the same order, `null`s where the extension writes them),
/// only `LastModifiedDate` being moto's own time; its failures the extension's 400 and text.
#[test]
fn the_lambda_extensions_parameter_route_answers_as_the_extension_did() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("data/lambda_extension_responses.json")).unwrap();
    let moto = Moto::start();
    moto.put_parameter(
        "/lambda-ext-test-param/dummy-string",
        "my-string-param-value",
        "String",
    );
    moto.put_parameter(
        "/lambda-ext-test-param/dummy-string-list",
        "listval-0,listval-1,listval-2",
        "StringList",
    );
    moto.put_parameter(
        "/lambda-ext-test-param/dummy-secure-string",
        "my-secure-string-value",
        "SecureString",
    );
    moto.label_parameter("/lambda-ext-test-param/dummy-secure-string", 1, "Dev");
    moto.put_parameter(
        "/lambda-ext-test-param/dummy-secure-string",
        "my-secure-string-value - 2022-11-16T08:24:05.476Z",
        "SecureString",
    );
    let agent = start(&moto, "");
    let keys = |text: &str| -> Vec<String> {
        text.split('"')
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[1].starts_with(':') && !w[0].starts_with(':'))
            .map(|w| w[0].to_owned())
            .collect()
    };
    for (uri, expected) in vectors["responses"].as_object().unwrap() {
        let reply = get(&agent, uri, &[&with_token()]);
        assert_eq!(reply.status, 200, "{uri}: {}", reply.text());
        let body = reply.text();
        let mut got: serde_json::Value = serde_json::from_str(&body).unwrap();
        let date = got["Parameter"]["LastModifiedDate"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            date.len() == 24 && date.ends_with('Z') && date.as_bytes()[19] == b'.',
            "{uri}: LastModifiedDate {date} is not ISO 8601 with milliseconds"
        );
        got["Parameter"]["LastModifiedDate"] = expected["Parameter"]["LastModifiedDate"].clone();
        assert_eq!(&got, expected, "{uri}");
        assert_eq!(
            keys(&body),
            keys(&expected.to_string()),
            "{uri}: keys in the extension's order"
        );
    }
    let error_body = vectors["error_body"].as_str().unwrap();
    for uri in vectors["errors"].as_array().unwrap() {
        let reply = get(&agent, uri.as_str().unwrap(), &[&with_token()]);
        assert_eq!(answer(&reply), (400, error_body.to_owned()), "{uri}");
        assert!(
            reply.header("x-keyway-error").is_some(),
            "{uri}: Keyway's reason rides in a header"
        );
    }
    // A SecureString without withDecryption: the extension answers its ciphertext; Keyway hands out none
    // (docs/daemon.md), and says so.
    let ciphertext = get(
        &agent,
        "/systemsmanager/parameters/get?name=%2Flambda-ext-test-param%2Fdummy-secure-string&version=1",
        &[&with_token()],
    );
    assert_eq!(answer(&ciphertext), (400, error_body.to_owned()));
    assert!(
        ciphertext
            .header("x-keyway-error")
            .unwrap()
            .contains("withDecryption=true")
    );
    // The token and method checks are the agent's.
    let no_token = get(&agent, "/systemsmanager/parameters/get?name=x", &[]);
    assert_eq!(answer(&no_token), (403, "Bad Token".to_owned()));
}
