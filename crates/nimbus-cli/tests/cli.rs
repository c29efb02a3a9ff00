//! End-to-end tests of the client subcommands: each test starts a real `nimbus server`
//! and runs the `nimbus` binary against it as a user would.

mod common;

use std::io::{Cursor, Write};
use std::path::Path;
use std::process::{Command, Output};

use common::Server;
use serde_json::Value;

/// Runs `command` with `args` and returns its output.
fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().expect("run the nimbus binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a client command that must succeed and returns its stdout.
fn run_ok(server: &Server, args: &[&str]) -> String {
    let output = run(server.cli(), args);
    assert!(
        output.status.success(),
        "nimbus {args:?} failed with {}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Runs a client command with `--json` that must succeed and returns the parsed output.
fn run_json(server: &Server, args: &[&str]) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let text = run_ok(server, &with_json);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("nimbus {args:?} printed invalid JSON ({error}): {text}"))
}

/// Runs a client command that must fail with exit code 1 and returns its output.
fn run_failing(command: Command, args: &[&str]) -> Output {
    let output = run(command, args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "nimbus {args:?} should exit with 1\nstdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    output
}

fn write_file(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Writes a Python function whose handler returns `{"hello": event["name"], "tag": TAG}`,
/// with a helper module in a subdirectory.
fn write_python_function(dir: &Path, tag: &str) {
    write_file(
        &dir.join("app.py"),
        "from lib.util import tag\n\n\ndef handler(event, context):\n    return {\"hello\": event.get(\"name\"), \"tag\": tag()}\n",
    );
    write_file(&dir.join("lib/__init__.py"), "");
    write_file(&dir.join("lib/util.py"), &format!("def tag():\n    return \"{tag}\"\n"));
}

/// Returns a zip file with one Python handler in `app.py`.
fn python_zip() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    writer.start_file("app.py", options).unwrap();
    writer
        .write_all(b"def handler(event, context):\n    return {\"hello\": event.get(\"name\")}\n")
        .unwrap();
    writer.finish().unwrap().into_inner()
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or_else(|| panic!("no field '{key}' in {value}"))
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    field(value, key)
        .as_str()
        .unwrap_or_else(|| panic!("field '{key}' is not a string in {value}"))
}

#[test]
fn newcomer_flow() {
    let server = Server::start();
    let code = tempfile::tempdir().unwrap();
    let code_dir = code.path().to_str().unwrap();
    write_python_function(code.path(), "first");

    // Create from a directory.
    let created = run_ok(
        &server,
        &[
            "function",
            "create",
            "hello",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            code_dir,
        ],
    );
    assert!(created.contains("function_name:"), "{created}");
    assert!(created.contains("hello"), "{created}");
    assert!(created.contains("python3.11"), "{created}");
    assert!(created.contains("app.handler"), "{created}");

    let latest = run_json(&server, &["function", "get", "hello"]);
    assert_eq!(str_field(&latest, "function_name"), "hello");
    assert_eq!(str_field(&latest, "runtime"), "python3.11");
    assert_eq!(str_field(&latest, "handler"), "app.handler");
    assert_eq!(str_field(&latest, "version"), "$LATEST");
    assert_eq!(field(&latest, "memory_size"), 128);
    let first_sha256 = str_field(&latest, "code_sha256").to_string();
    assert_eq!(first_sha256.len(), 64);

    // The same directory zips to the same package, so the hash is stable.
    let latest_text = run_ok(&server, &["function", "get", "hello"]);
    assert!(latest_text.contains(&first_sha256), "{latest_text}");

    let listed = run_ok(&server, &["function", "list"]);
    let header = listed.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "STATE", "LAST_MODIFIED"]
    );
    let row = listed
        .lines()
        .find(|line| line.starts_with("hello "))
        .unwrap_or_else(|| panic!("no row for hello: {listed}"));
    assert!(row.contains("python3.11"), "{row}");
    assert!(row.contains("128 MB"), "{row}");
    let listed_json = run_json(&server, &["function", "list"]);
    let functions = field(&listed_json, "functions").as_array().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(str_field(&functions[0], "function_name"), "hello");

    // Changed code, published in the same request: version 1.
    write_python_function(code.path(), "second");
    let updated = run_ok(
        &server,
        &["function", "update-code", "hello", "--code", code_dir, "--publish"],
    );
    assert!(updated.starts_with("published version 1\n"), "{updated}");
    let version_1 = run_json(&server, &["function", "get", "hello", "--qualifier", "1"]);
    assert_eq!(str_field(&version_1, "version"), "1");
    let second_sha256 = str_field(&version_1, "code_sha256").to_string();
    assert_ne!(second_sha256, first_sha256);

    // Changed again, then published on its own: version 2.
    write_python_function(code.path(), "third");
    let updated = run_json(&server, &["function", "update-code", "hello", "--code", code_dir]);
    assert_eq!(str_field(&updated, "version"), "$LATEST");
    let published = run_ok(&server, &["function", "publish", "hello", "--description", "third tag"]);
    assert!(published.starts_with("published version 2\n"), "{published}");
    assert!(published.contains("third tag"), "{published}");

    let versions = run_json(&server, &["function", "versions", "hello"]);
    let numbers: Vec<&str> = field(&versions, "versions")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_field(v, "version"))
        .collect();
    assert_eq!(numbers, ["$LATEST", "1", "2"]);
    let versions_table = run_ok(&server, &["function", "versions", "hello"]);
    let rows: Vec<&str> = versions_table.lines().collect();
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["VERSION", "CODE_SHA256", "DESCRIPTION", "LAST_MODIFIED"]
    );
    assert_eq!(rows.len(), 4, "{versions_table}");
    assert!(rows[2].starts_with("1 "), "{versions_table}");
    assert!(rows[2].contains(&second_sha256[..12]), "{versions_table}");
    assert!(
        !rows[2].contains(&second_sha256[..13]),
        "the hash should be cut to 12 characters: {versions_table}"
    );
    assert!(rows[3].contains("third tag"), "{versions_table}");

    // An alias on version 1 that sends a quarter of the traffic to version 2.
    let created_alias = run_ok(
        &server,
        &[
            "alias",
            "create",
            "hello",
            "live",
            "--function-version",
            "1",
            "--routing-weight",
            "2=0.25",
        ],
    );
    assert!(
        created_alias.starts_with("created alias live of function hello\n"),
        "{created_alias}"
    );
    let alias = run_json(&server, &["alias", "get", "hello", "live"]);
    assert_eq!(str_field(&alias, "name"), "live");
    assert_eq!(str_field(&alias, "function_version"), "1");
    assert_eq!(field(&alias, "routing_config")["additional_version_weights"]["2"], 0.25);
    let alias_text = run_ok(&server, &["alias", "get", "hello", "live"]);
    assert!(alias_text.contains("2=0.25"), "{alias_text}");

    let aliases = run_ok(&server, &["alias", "list", "hello"]);
    let alias_rows: Vec<Vec<&str>> = aliases.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(alias_rows[0], ["NAME", "VERSION", "WEIGHTS", "DESCRIPTION"]);
    assert_eq!(alias_rows[1], ["live", "1", "2=0.25", "-"]);
    let aliases_json = run_json(&server, &["alias", "list", "hello"]);
    assert_eq!(field(&aliases_json, "aliases").as_array().unwrap().len(), 1);

    // Version 1 cannot go while the alias points at it.
    let rejected = run_failing(server.cli(), &["function", "delete", "hello", "--qualifier", "1"]);
    let message = stderr(&rejected);
    assert!(message.starts_with("error: "), "{message}");
    assert!(message.contains("live"), "the message should name the alias: {message}");
    assert!(
        message.contains("HTTP 409") || message.contains("HTTP 400"),
        "{message}"
    );
    let still_there = run_json(&server, &["function", "get", "hello", "--qualifier", "1"]);
    assert_eq!(str_field(&still_there, "version"), "1");

    let deleted_alias = run_ok(&server, &["alias", "delete", "hello", "live"]);
    assert_eq!(deleted_alias, "deleted alias live of function hello\n");
    let deleted = run_ok(&server, &["function", "delete", "hello", "--qualifier", "1"]);
    assert_eq!(deleted, "deleted version 1 of function hello\n");

    let deleted_get = run_failing(server.cli(), &["function", "get", "hello", "--qualifier", "1"]);
    assert!(stderr(&deleted_get).contains("HTTP 404"), "{}", stderr(&deleted_get));
    let versions = run_json(&server, &["function", "versions", "hello"]);
    let numbers: Vec<&str> = field(&versions, "versions")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_field(v, "version"))
        .collect();
    assert_eq!(numbers, ["$LATEST", "2"]);
}

#[test]
fn create_from_zip_and_code_object() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("function.zip");
    let zip = python_zip();
    std::fs::write(&zip_path, &zip).unwrap();
    let zip_arg = zip_path.to_str().unwrap();

    // A .zip file is sent as is, so the server stores exactly these bytes.
    let from_zip = run_json(
        &server,
        &[
            "function",
            "create",
            "zipped",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            zip_arg,
        ],
    );
    assert_eq!(field(&from_zip, "code_size"), zip.len());

    // --publish on create publishes version 1 in the same request.
    let published = run_ok(
        &server,
        &[
            "function",
            "create",
            "zipped-published",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            zip_arg,
            "--publish",
        ],
    );
    assert!(published.starts_with("published version 1\n"), "{published}");
    assert!(published.contains("function:zipped-published:1"), "{published}");

    // Upload the same zip as a code object under a key with '/' and a space.
    let uploaded = run_json(
        &server,
        &["code", "upload", "my-bucket", "releases/v1/function one.zip", zip_arg],
    );
    assert_eq!(str_field(&uploaded, "bucket"), "my-bucket");
    assert_eq!(str_field(&uploaded, "key"), "releases/v1/function one.zip");
    assert_eq!(field(&uploaded, "size"), zip.len());
    assert_eq!(str_field(&uploaded, "sha256"), str_field(&from_zip, "code_sha256"));
    let version_id = str_field(&uploaded, "version_id").to_string();
    assert!(!version_id.is_empty());

    let uploaded_text = run_ok(
        &server,
        &["code", "upload", "my-bucket", "releases/v1/function one.zip", zip_arg],
    );
    let first_line = uploaded_text.lines().next().unwrap_or_default();
    assert!(first_line.starts_with("version_id:"), "{uploaded_text}");

    let from_object = run_json(
        &server,
        &[
            "function",
            "create",
            "from-object",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--s3-bucket",
            "my-bucket",
            "--s3-key",
            "releases/v1/function one.zip",
            "--s3-object-version",
            &version_id,
            "--memory-size",
            "256",
            "--env",
            "STAGE=test",
            "--description",
            "from an uploaded object",
        ],
    );
    assert_eq!(str_field(&from_object, "code_sha256"), str_field(&uploaded, "sha256"));
    assert_eq!(field(&from_object, "memory_size"), 256);
    assert_eq!(field(&from_object, "environment")["variables"]["STAGE"], "test");
    assert_eq!(str_field(&from_object, "description"), "from an uploaded object");

    // update-config replaces the variables, and --clear-env removes them.
    let changed = run_json(
        &server,
        &[
            "function",
            "update-config",
            "from-object",
            "--env",
            "LOG_LEVEL=debug",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(
        field(&changed, "environment")["variables"],
        serde_json::json!({"LOG_LEVEL": "debug"})
    );
    assert_eq!(field(&changed, "timeout"), 30);
    let cleared = run_json(&server, &["function", "update-config", "from-object", "--clear-env"]);
    assert_eq!(field(&cleared, "environment")["variables"], serde_json::json!({}));
    assert_eq!(field(&cleared, "timeout"), 30);

    // A directory given to `code upload` is zipped first.
    write_python_function(&dir.path().join("src"), "dir");
    let from_dir = run_json(
        &server,
        &[
            "code",
            "upload",
            "my-bucket",
            "src.zip",
            dir.path().join("src").to_str().unwrap(),
        ],
    );
    assert_ne!(str_field(&from_dir, "sha256"), str_field(&uploaded, "sha256"));
}

#[test]
fn bad_input_reported() {
    let server = Server::start();
    let code = tempfile::tempdir().unwrap();
    write_python_function(code.path(), "bad");
    let code_dir = code.path().to_str().unwrap();
    let create = [
        "function",
        "create",
        "bad",
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--code",
        code_dir,
    ];

    // The CLI rejects a malformed --env before sending anything.
    let mut args = create.to_vec();
    args.extend(["--env", "NOEQUALS"]);
    let output = run(server.cli(), &args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("'NOEQUALS'"), "{message}");
    assert!(message.contains("KEY=VALUE"), "{message}");

    // The server's validation message reaches stderr; with --json the body goes to stdout.
    let mut args = create.to_vec();
    args.extend(["--memory-size", "64"]);
    let output = run_failing(server.cli(), &args);
    let message = stderr(&output);
    assert!(
        message.starts_with("error: memory_size 64 is out of range; use 128 to 10240 MB ("),
        "{message}"
    );
    assert!(message.contains("HTTP 400"), "{message}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let mut args = vec!["--json"];
    args.extend(create);
    args.extend(["--memory-size", "64"]);
    let output = run_failing(server.cli(), &args);
    let body: Value = serde_json::from_str(&stdout(&output)).expect("error body on stdout is JSON");
    assert_eq!(
        str_field(&body, "message"),
        "memory_size 64 is out of range; use 128 to 10240 MB"
    );
    let error_type = str_field(&body, "type");
    assert!(
        stderr(&output).contains(&format!("({error_type}, HTTP 400)")),
        "{}",
        stderr(&output)
    );

    // A missing code path is named.
    let missing = code.path().join("no-such-dir");
    let missing_arg = missing.to_str().unwrap();
    let output = run(
        server.cli(),
        &[
            "function",
            "create",
            "bad",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            missing_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("code path '{missing_arg}' not found")),
        "{}",
        stderr(&output)
    );

    // Nothing was created by the failed attempts.
    let output = run_failing(server.cli(), &["function", "get", "bad"]);
    assert!(stderr(&output).contains("HTTP 404"), "{}", stderr(&output));

    // A wrong API key gets the server's 401 message.
    let mut command = server.cli();
    command.env("NIMBUS_API_KEY", "wrong-key-0000000000000000000000");
    let output = run_failing(command, &["function", "list"]);
    let message = stderr(&output);
    assert!(message.starts_with("error: "), "{message}");
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(
        !message.contains("wrong-key-0000000000000000000000"),
        "the whole key should not be echoed: {message}"
    );
}

#[test]
fn concurrency_and_account() {
    let server = Server::start();
    let code = tempfile::tempdir().unwrap();
    write_python_function(code.path(), "limited");
    run_ok(
        &server,
        &[
            "function",
            "create",
            "limited",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            code.path().to_str().unwrap(),
        ],
    );

    let unset = run_json(&server, &["concurrency", "get", "limited"]);
    assert_eq!(field(&unset, "reserved_concurrent_executions"), &Value::Null);
    let unset_text = run_ok(&server, &["concurrency", "get", "limited"]);
    assert!(unset_text.contains("none"), "{unset_text}");

    let set = run_json(&server, &["concurrency", "set", "limited", "5"]);
    assert_eq!(field(&set, "reserved_concurrent_executions"), 5);
    let set_text = run_ok(&server, &["concurrency", "get", "limited"]);
    assert_eq!(set_text, "reserved_concurrent_executions: 5\n");
    let configuration = run_json(&server, &["function", "get", "limited"]);
    assert_eq!(field(&configuration, "reserved_concurrent_executions"), 5);

    let removed = run_ok(&server, &["concurrency", "delete", "limited"]);
    assert_eq!(removed, "removed the reserved concurrency of function limited\n");
    let unset = run_json(&server, &["concurrency", "get", "limited"]);
    assert_eq!(field(&unset, "reserved_concurrent_executions"), &Value::Null);

    let missing = run_failing(server.cli(), &["concurrency", "get", "no-such-function"]);
    assert!(stderr(&missing).contains("HTTP 404"), "{}", stderr(&missing));

    let account = run_json(&server, &["account"]);
    let fields = account.as_object().expect("account is a JSON object");
    assert!(!fields.is_empty(), "{account}");
    let account_text = run_ok(&server, &["account"]);
    for (key, value) in fields {
        if value.is_string() || value.is_number() {
            assert!(
                account_text.contains(&format!("{key}:")),
                "{key} missing from {account_text}"
            );
        }
    }
}

#[test]
fn api_key_from_data_dir() {
    // Without --api-key the server generates a key and writes it to DATA_DIR/api-key.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path(), &[], &[]);
    assert!(
        data.path().join("api-key").is_file(),
        "the server should write its API key file"
    );

    let mut command = Command::new(common::nimbus_binary());
    command
        .env("NIMBUS_ENDPOINT", &server.url)
        .env_remove("NIMBUS_API_KEY")
        .env("NIMBUS_DATA_DIR", data.path());
    let output = run(command, &["--json", "account"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Without any key, the error names the ways to pass one.
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(common::nimbus_binary());
    command
        .env("NIMBUS_ENDPOINT", &server.url)
        .env_remove("NIMBUS_API_KEY")
        .env("NIMBUS_DATA_DIR", empty.path());
    let output = run_failing(command, &["account"]);
    let message = stderr(&output);
    assert!(message.contains("--api-key"), "{message}");
    assert!(message.contains("NIMBUS_API_KEY"), "{message}");
}

#[test]
fn unreachable_server_named() {
    // A port that was free a moment ago has no server behind it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);

    let mut command = Command::new(common::nimbus_binary());
    command
        .env("NIMBUS_ENDPOINT", &endpoint)
        .env("NIMBUS_API_KEY", common::API_KEY);
    let output = run_failing(command, &["function", "list"]);
    let message = stderr(&output);
    assert!(message.contains(&endpoint), "{message}");
    assert!(message.contains("nimbus server"), "{message}");
    assert!(message.contains("--endpoint"), "{message}");
}

#[test]
fn list_follows_pages() {
    // The server returns 50 functions per page by default, so 52 take two pages.
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("function.zip");
    std::fs::write(&zip_path, python_zip()).unwrap();
    let zip_arg = zip_path.to_str().unwrap();
    let names: Vec<String> = (0..52).map(|index| format!("fn-{index:02}")).collect();
    for name in &names {
        run_ok(
            &server,
            &[
                "function",
                "create",
                name,
                "--runtime",
                "python3.11",
                "--handler",
                "app.handler",
                "--code",
                zip_arg,
            ],
        );
    }

    let all = run_json(&server, &["function", "list"]);
    let listed: Vec<&str> = field(&all, "functions")
        .as_array()
        .unwrap()
        .iter()
        .map(|f| str_field(f, "function_name"))
        .collect();
    assert_eq!(listed, names);
    assert_eq!(field(&all, "next_marker"), &Value::Null);
    let table = run_ok(&server, &["function", "list"]);
    assert_eq!(table.lines().count(), 53, "{table}");

    let first_page = run_json(&server, &["function", "list", "--max-items", "50"]);
    assert_eq!(field(&first_page, "functions").as_array().unwrap().len(), 50);
    let marker = str_field(&first_page, "next_marker").to_string();
    let output = run(server.cli(), &["function", "list", "--max-items", "50"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 51);
    let hint = stderr(&output);
    assert!(
        hint.contains(&format!("pass --marker {marker} for the next page")),
        "{hint}"
    );

    let rest = run_json(&server, &["function", "list", "--max-items", "50", "--marker", &marker]);
    let listed: Vec<&str> = field(&rest, "functions")
        .as_array()
        .unwrap()
        .iter()
        .map(|f| str_field(f, "function_name"))
        .collect();
    assert_eq!(listed, ["fn-50", "fn-51"]);
    assert_eq!(field(&rest, "next_marker"), &Value::Null);
}
