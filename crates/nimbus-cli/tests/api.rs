//! End-to-end tests of the HTTP API: each test starts a real `nimbus server` and sends
//! requests to it as a client would.

mod common;

use std::collections::BTreeSet;
use std::io::{Cursor, Write};
use std::sync::OnceLock;

use base64::Engine;
use common::{create_account, python_zip, zip_of, Api, Reply, Server, API_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const MIB: usize = 1024 * 1024;

/// Asserts that `reply` is an error with `status`, the AWS exception `error_type`, and
/// a message that contains each of `words`. Every error body has exactly the fields
/// `type` and `message`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, error_type: &str, words: &[&str]) {
    assert_eq!(reply.status, status, "unexpected status; body: {}", reply.body);
    assert_eq!(
        reply.text("type"),
        error_type,
        "unexpected error type; body: {}",
        reply.body
    );
    let fields: BTreeSet<&str> = reply
        .body
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        BTreeSet::from(["message", "type"]),
        "error body fields; body: {}",
        reply.body
    );
    let message = reply.text("message");
    for word in words {
        assert!(
            message.contains(word),
            "error message should contain {word:?}: {message}"
        );
    }
}

#[track_caller]
fn assert_status(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "unexpected status; body: {}", reply.body);
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Body of a create request for a Python function with handler `app.handler`.
fn create_body(zip: &[u8]) -> Value {
    json!({"runtime": "python3.12", "handler": "app.handler", "code": {"zip_file": base64_of(zip)}})
}

/// Body of a create request whose code is the code object `bucket`/`key`.
fn create_from_object(bucket: &str, key: &str, version_id: Option<&str>) -> Value {
    let mut code = json!({"s3_bucket": bucket, "s3_key": key});
    if let Some(version_id) = version_id {
        code["s3_object_version"] = json!(version_id);
    }
    json!({"runtime": "python3.12", "handler": "app.handler", "code": code})
}

/// Creates a Python function that must succeed and returns its configuration.
async fn create_function(api: &Api, name: &str) -> Value {
    let reply = api
        .put(&format!("/functions/{name}"), &create_body(&python_zip(name)))
        .await;
    assert_status(&reply, 201);
    reply.body
}

/// Names of the code packages stored in the server's local origin store.
fn stored_packages(server: &Server) -> BTreeSet<String> {
    let dir = server.data_dir.join("origin").join("packages");
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(error) => panic!("failed to list {}: {error}", dir.display()),
    }
}

/// Returns a zip built by `build` on an empty writer.
fn zip_built(build: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut writer);
    writer.finish().unwrap().into_inner()
}

fn zip_with_symlink(link: &str, target: &str) -> Vec<u8> {
    zip_built(|writer| {
        writer.start_file("app.py", SimpleFileOptions::default()).unwrap();
        writer
            .write_all(b"def handler(event, context):\n    return 1\n")
            .unwrap();
        writer.add_symlink(link, target, SimpleFileOptions::default()).unwrap();
    })
}

/// Returns a zip with `app.py` and one 251 MiB file of zeros, which is over the
/// 250 MiB unzipped limit but well under 1 MB zipped. The tests share one copy.
fn zeros_zip() -> &'static [u8] {
    static ZIP: OnceLock<Vec<u8>> = OnceLock::new();
    ZIP.get_or_init(|| {
        zip_built(|writer| {
            writer.start_file("app.py", SimpleFileOptions::default()).unwrap();
            writer
                .write_all(b"def handler(event, context):\n    return 1\n")
                .unwrap();
            let options = SimpleFileOptions::default().compression_level(Some(1));
            writer.start_file("zeros.bin", options).unwrap();
            let chunk = vec![0u8; MIB];
            for _ in 0..251 {
                writer.write_all(&chunk).unwrap();
            }
        })
    })
}

/// Returns a zip with `app.py` and 51 MiB of pseudo-random bytes, stored
/// uncompressed, which is over the 50 MiB inline limit. The tests share one copy.
fn incompressible_zip() -> &'static [u8] {
    static ZIP: OnceLock<Vec<u8>> = OnceLock::new();
    ZIP.get_or_init(|| {
        // xorshift64 output does not compress, and a fixed seed keeps the zip the same.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = Vec::with_capacity(51 * MIB);
        while noise.len() < 51 * MIB {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.extend_from_slice(&state.to_le_bytes());
        }
        zip_built(|writer| {
            let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
            writer.start_file("app.py", options).unwrap();
            writer
                .write_all(b"def handler(event, context):\n    return 1\n")
                .unwrap();
            writer.start_file("noise.bin", options).unwrap();
            writer.write_all(&noise).unwrap();
        })
    })
}

/// A code package that validation rejects, with the expected error.
struct BadPackage {
    case: &'static str,
    zip: Vec<u8>,
    handler: &'static str,
    words: &'static [&'static str],
}

/// Packages that fail validation as zips (so also as code objects), each with
/// the words its 400 message must contain.
fn bad_packages() -> Vec<BadPackage> {
    let app: &[u8] = b"def handler(event, context):\n    return 1\n";
    vec![
        BadPackage {
            case: "not a zip",
            zip: b"plain text, not a zip".to_vec(),
            handler: "app.handler",
            words: &["not a valid zip file"],
        },
        BadPackage {
            case: "empty zip",
            zip: zip_of(&[]),
            handler: "app.handler",
            words: &["contains no files", "add at least one file"],
        },
        BadPackage {
            case: "only a directory",
            zip: zip_built(|writer| writer.add_directory("lib/", SimpleFileOptions::default()).unwrap()),
            handler: "app.handler",
            words: &["contains no files", "add at least one file"],
        },
        BadPackage {
            case: "parent entry",
            zip: zip_of(&[("app.py", app), ("../evil.py", b"x = 1\n")]),
            handler: "app.handler",
            words: &["'../evil.py'", "escapes the package root", "without '..'"],
        },
        BadPackage {
            case: "absolute entry",
            zip: zip_of(&[("app.py", app), ("/etc/evil.py", b"x = 1\n")]),
            handler: "app.handler",
            words: &["'/etc/evil.py'", "escapes the package root"],
        },
        BadPackage {
            case: "absolute symlink",
            zip: zip_with_symlink("passwd", "/etc/passwd"),
            handler: "app.handler",
            words: &["symlink 'passwd'", "'/etc/passwd'", "outside the package root"],
        },
        BadPackage {
            case: "parent symlink",
            zip: zip_with_symlink("a/link", "../../x"),
            handler: "app.handler",
            words: &["symlink 'a/link'", "'../../x'", "outside the package root"],
        },
        BadPackage {
            case: "missing handler file",
            zip: zip_of(&[("app.py", app)]),
            handler: "main.handler",
            words: &[
                "'main.handler'",
                "main.py",
                "contains: app.py",
                "fix the handler or the package",
            ],
        },
    ]
}

#[tokio::test]
async fn errors_have_type_and_status() {
    let server = Server::start();
    let api = server.api();
    create_function(&api, "taken").await;

    let mut body = create_body(&python_zip("x"));
    body["memory_size"] = json!(127);
    let invalid = api.put("/functions/invalid", &body).await;
    assert_error(
        &invalid,
        400,
        "InvalidParameterValueException",
        &["memory_size 127", "128 to 10240 MB"],
    );

    let no_key = api.with_key("").get("/functions").await;
    assert_error(
        &no_key,
        401,
        "UnrecognizedClientException",
        &["Authorization header is missing", "Bearer KEY"],
    );

    let no_function = api.get("/functions/absent").await;
    assert_error(
        &no_function,
        404,
        "ResourceNotFoundException",
        &["function 'absent' was not found"],
    );

    let no_route = api.get("/no-such-route").await;
    assert_error(
        &no_route,
        404,
        "ResourceNotFoundException",
        &["no API route matches", "'/no-such-route'", "/openapi.json"],
    );

    let wrong_method = api.post("/functions", &json!({})).await;
    assert_error(
        &wrong_method,
        405,
        "MethodNotAllowedException",
        &["method POST", "'/functions'", "/openapi.json"],
    );

    let duplicate = api.put("/functions/taken", &create_body(&python_zip("again"))).await;
    assert_error(
        &duplicate,
        409,
        "ResourceConflictException",
        &["function 'taken' already exists"],
    );

    let unzipped_too_large = api.put("/functions/huge", &create_body(zeros_zip())).await;
    assert_error(
        &unzipped_too_large,
        413,
        "RequestTooLargeException",
        &["262144000-byte limit"],
    );

    let text = api
        .send_raw(Method::PUT, "/functions/text", Some("text/plain"), Some(b"{}".to_vec()))
        .await;
    assert_error(
        &text,
        415,
        "UnsupportedMediaTypeException",
        &["'text/plain'", "application/json"],
    );
}

#[tokio::test]
async fn package_rejections_store_nothing() {
    let server = Server::start();
    let api = server.api();

    let mut cases: Vec<(&str, String, &str, &[&str])> = vec![(
        "not base64",
        "!!! not base64 !!!".to_string(),
        "app.handler",
        &["not valid base64", "standard base64"],
    )];
    for bad in bad_packages() {
        cases.push((bad.case, base64_of(&bad.zip), bad.handler, bad.words));
    }

    for (index, (case, zip_file, handler, words)) in cases.into_iter().enumerate() {
        let name = format!("bad-{index}");
        let body = json!({"runtime": "python3.12", "handler": handler, "code": {"zip_file": zip_file}});
        let reply = api.put(&format!("/functions/{name}"), &body).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        assert_error(&reply, 400, "InvalidParameterValueException", words);

        let lookup = api.get(&format!("/functions/{name}")).await;
        assert_eq!(
            lookup.status, 404,
            "{case}: the function should not exist: {}",
            lookup.body
        );
        assert_eq!(
            stored_packages(&server),
            BTreeSet::new(),
            "{case}: no package should be stored"
        );
    }
}

#[tokio::test]
async fn package_over_unzipped_limit() {
    let server = Server::start();
    let api = server.api();

    let inline = api.put("/functions/huge", &create_body(zeros_zip())).await;
    assert_error(
        &inline,
        413,
        "RequestTooLargeException",
        &[
            "more than 262144000 bytes unzipped",
            "262144000-byte limit",
            "remove files",
        ],
    );
    assert_status(&api.get("/functions/huge").await, 404);
    assert_eq!(stored_packages(&server), BTreeSet::new());

    let upload = api.put_object("code", "huge.zip", zeros_zip().to_vec()).await;
    assert_status(&upload, 201);
    let referenced = api
        .put("/functions/huge", &create_from_object("code", "huge.zip", None))
        .await;
    assert_error(
        &referenced,
        413,
        "RequestTooLargeException",
        &["262144000-byte limit", "remove files"],
    );
    assert_status(&api.get("/functions/huge").await, 404);
    assert_eq!(stored_packages(&server), BTreeSet::new());
}

#[tokio::test]
async fn package_over_inline_limit() {
    let server = Server::start();
    let api = server.api();
    let zip = incompressible_zip();
    assert!(
        zip.len() > 51 * MIB,
        "the test zip should be over 51 MiB, not {} bytes",
        zip.len()
    );

    let inline = api.put("/functions/big", &create_body(zip)).await;
    assert_error(
        &inline,
        413,
        "RequestTooLargeException",
        &[
            &format!("{} bytes zipped", zip.len()),
            "52428800-byte limit",
            "PUT /code-objects/",
            "s3_bucket and s3_key",
        ],
    );
    assert_status(&api.get("/functions/big").await, 404);
    assert_eq!(stored_packages(&server), BTreeSet::new());

    // The inline limit does not apply to code objects.
    let upload = api.put_object("code", "big.zip", zip.to_vec()).await;
    assert_status(&upload, 201);
    let created = api
        .put("/functions/big", &create_from_object("code", "big.zip", None))
        .await;
    assert_status(&created, 201);
    assert_eq!(created.body["code_size"], json!(zip.len()));
    let package = format!("{}.zip", created.text("code_sha256"));
    assert_eq!(stored_packages(&server), BTreeSet::from([package]));
}

#[tokio::test]
async fn update_code_rejections_keep_code() {
    let server = Server::start();
    let api = server.api();
    let created = create_function(&api, "fn").await;
    let before = stored_packages(&server);
    assert_eq!(before.len(), 1, "the created function's package is stored: {before:?}");

    // The function's handler is app.handler, so only the cases for that handler apply.
    for bad in bad_packages().into_iter().filter(|bad| bad.handler == "app.handler") {
        let reply = api
            .put(
                "/functions/fn/code",
                &json!({"zip_file": base64_of(&bad.zip), "publish": true}),
            )
            .await;
        assert_eq!(reply.status, 400, "{}: {}", bad.case, reply.body);
        assert_error(&reply, 400, "InvalidParameterValueException", bad.words);
        assert_eq!(
            stored_packages(&server),
            before,
            "{}: no package should be stored",
            bad.case
        );
    }

    let without_app = zip_of(&[("main.py", b"def handler(event, context):\n    return 1\n")]);
    let reply = api
        .put("/functions/fn/code", &json!({"zip_file": base64_of(&without_app)}))
        .await;
    assert_error(
        &reply,
        400,
        "InvalidParameterValueException",
        &["'app.handler'", "app.py", "contains: main.py"],
    );

    let handler = api
        .put("/functions/fn/configuration", &json!({"handler": "main.handler"}))
        .await;
    assert_error(
        &handler,
        400,
        "InvalidParameterValueException",
        &["'main.handler'", "main.py", "contains: app.py"],
    );

    let read = api.get("/functions/fn").await;
    assert_eq!(read.body["code_sha256"], created["code_sha256"]);
    assert_eq!(read.body["handler"], json!("app.handler"));
    assert_eq!(read.body["state"], json!("Active"));
    let versions = api.get("/functions/fn/versions").await;
    assert_eq!(
        versions.body["versions"].as_array().unwrap().len(),
        1,
        "nothing was published"
    );
}

#[tokio::test]
async fn object_package_rejections_store_nothing() {
    let server = Server::start();
    let api = server.api();

    for (index, bad) in bad_packages().into_iter().enumerate() {
        let key = format!("bad/{index}.zip");
        let upload = api.put_object("code", &key, bad.zip).await;
        assert_eq!(
            upload.status, 201,
            "{}: uploading the object: {}",
            bad.case, upload.body
        );

        let name = format!("bad-{index}");
        let mut body = create_from_object("code", &key, None);
        body["handler"] = json!(bad.handler);
        let reply = api.put(&format!("/functions/{name}"), &body).await;
        assert_eq!(reply.status, 400, "{}: {}", bad.case, reply.body);
        assert_error(&reply, 400, "InvalidParameterValueException", bad.words);

        let lookup = api.get(&format!("/functions/{name}")).await;
        assert_eq!(
            lookup.status, 404,
            "{}: the function should not exist: {}",
            bad.case, lookup.body
        );
        assert_eq!(
            stored_packages(&server),
            BTreeSet::new(),
            "{}: no package should be stored",
            bad.case
        );
    }
}

#[tokio::test]
async fn object_reference_missing_parts() {
    let server = Server::start();
    let api = server.api();
    assert_status(&api.put_object("code", "app.zip", python_zip("one")).await, 201);

    let no_bucket = api
        .put("/functions/f", &create_from_object("absent-bucket", "app.zip", None))
        .await;
    assert_error(
        &no_bucket,
        400,
        "InvalidParameterValueException",
        &[
            "bucket 'absent-bucket' not found",
            "PUT /code-objects/absent-bucket/app.zip",
        ],
    );

    let no_key = api
        .put("/functions/f", &create_from_object("code", "absent.zip", None))
        .await;
    assert_error(
        &no_key,
        400,
        "InvalidParameterValueException",
        &["code object 'absent.zip'", "not found"],
    );

    let version = "0000000000000000deadbeef";
    let no_version = api
        .put("/functions/f", &create_from_object("code", "app.zip", Some(version)))
        .await;
    assert_error(
        &no_version,
        400,
        "InvalidParameterValueException",
        &[
            "version '0000000000000000deadbeef'",
            "'app.zip'",
            "not found",
            "version_id",
        ],
    );

    let body = json!({"runtime": "python3.12", "handler": "app.handler", "code": {"s3_bucket": "code"}});
    let half = api.put("/functions/f", &body).await;
    assert_error(
        &half,
        400,
        "InvalidParameterValueException",
        &["both s3_bucket and s3_key"],
    );

    let body = json!({"runtime": "python3.12", "handler": "app.handler",
        "code": {"zip_file": base64_of(&python_zip("x")), "s3_bucket": "code", "s3_key": "app.zip"}});
    let both = api.put("/functions/f", &body).await;
    assert_error(
        &both,
        400,
        "InvalidParameterValueException",
        &["both zip_file and s3_bucket/s3_key", "give one"],
    );

    let body = json!({"runtime": "python3.12", "handler": "app.handler", "code": {}});
    let none = api.put("/functions/f", &body).await;
    assert_error(
        &none,
        400,
        "InvalidParameterValueException",
        &["code is missing", "zip_file", "s3_bucket"],
    );

    assert_status(&api.get("/functions/f").await, 404);
    assert_eq!(stored_packages(&server), BTreeSet::new());
}

#[tokio::test]
async fn function_name_rules() {
    let server = Server::start();
    let api = server.api();
    let body = create_body(&python_zip("x"));

    let long = "a".repeat(65);
    let too_long = api.put(&format!("/functions/{long}"), &body).await;
    assert_error(
        &too_long,
        400,
        "InvalidParameterValueException",
        &["65 characters long", "1 to 64"],
    );

    let dotted = api.put("/functions/my.function", &body).await;
    assert_error(
        &dotted,
        400,
        "InvalidParameterValueException",
        &[
            "'my.function'",
            "contains '.'",
            "letters, digits, hyphens and underscores",
        ],
    );

    let longest = "a".repeat(64);
    assert_status(&api.put(&format!("/functions/{longest}"), &body).await, 201);

    let lookup = api.get("/functions/my.function").await;
    assert_error(&lookup, 400, "InvalidParameterValueException", &["contains '.'"]);
}

#[tokio::test]
async fn function_names_case_sensitive() {
    let server = Server::start();
    let api = server.api();

    let upper = create_function(&api, "Hello").await;
    let lower = create_function(&api, "hello").await;
    assert_ne!(upper["code_sha256"], lower["code_sha256"]);

    let upper_read = api.get("/functions/Hello").await;
    assert_eq!(upper_read.text("function_name"), "Hello");
    assert_eq!(upper_read.body["code_sha256"], upper["code_sha256"]);
    let lower_read = api.get("/functions/hello").await;
    assert_eq!(lower_read.text("function_name"), "hello");
    assert_eq!(lower_read.body["code_sha256"], lower["code_sha256"]);
    assert_status(&api.get("/functions/HELLO").await, 404);

    let list = api.get("/functions").await;
    let names: Vec<&str> = list.body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Hello", "hello"]);
}

#[tokio::test]
async fn configuration_values_out_of_range() {
    let server = Server::start();
    let api = server.api();
    let big_value = "v".repeat(4096);
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "memory_size",
            json!(127),
            vec!["memory_size 127 is out of range", "128 to 10240 MB"],
        ),
        (
            "memory_size",
            json!(10241),
            vec!["memory_size 10241 is out of range", "128 to 10240 MB"],
        ),
        (
            "timeout",
            json!(0),
            vec!["timeout 0 is out of range", "1 to 900 seconds"],
        ),
        (
            "timeout",
            json!(901),
            vec!["timeout 901 is out of range", "1 to 900 seconds"],
        ),
        (
            "ephemeral_storage",
            json!(511),
            vec!["ephemeral_storage 511 is out of range", "512 to 10240 MB"],
        ),
        (
            "environment",
            json!({"variables": {"BIG": big_value}}),
            vec!["4099 bytes", "limit is 4096 bytes"],
        ),
        (
            "environment",
            json!({"variables": {"AWS_REGION": "eu-west-1"}}),
            vec!["'AWS_REGION'", "reserved", "choose another name"],
        ),
        (
            "environment",
            json!({"variables": {"1X": "v"}}),
            vec!["'1X'", "is invalid", "start with a letter"],
        ),
    ];

    for (field, value, words) in cases {
        let mut body = create_body(&python_zip("x"));
        body[field] = value.clone();
        let created = api.put("/functions/f", &body).await;
        assert_eq!(created.status, 400, "create with {field} = {value}: {}", created.body);
        assert_error(&created, 400, "InvalidParameterValueException", &words);
        assert_status(&api.get("/functions/f").await, 404);
    }

    create_function(&api, "g").await;
    let updated = api
        .put("/functions/g/configuration", &json!({"memory_size": 10241}))
        .await;
    assert_error(
        &updated,
        400,
        "InvalidParameterValueException",
        &["memory_size 10241 is out of range"],
    );
    assert_eq!(api.get("/functions/g").await.body["memory_size"], json!(128));
}

#[tokio::test]
async fn request_body_shape_errors() {
    let server = Server::start();
    let api = server.api();

    let mut tracing = create_body(&python_zip("x"));
    tracing["tracing_mode"] = json!("On");
    let reply = api.put("/functions/f", &tracing).await;
    assert_error(
        &reply,
        400,
        "InvalidRequestContentException",
        &["'tracing_mode'", "`On`", "`Active` or `PassThrough`"],
    );

    let mut unknown = create_body(&python_zip("x"));
    unknown["memory"] = json!(256);
    let reply = api.put("/functions/f", &unknown).await;
    assert_error(
        &reply,
        400,
        "InvalidRequestContentException",
        &["unknown field `memory`", "`memory_size`"],
    );

    let mut wrong_type = create_body(&python_zip("x"));
    wrong_type["memory_size"] = json!("big");
    let reply = api.put("/functions/f", &wrong_type).await;
    assert_error(
        &reply,
        400,
        "InvalidRequestContentException",
        &["field 'memory_size'", "\"big\""],
    );

    let mut missing = create_body(&python_zip("x"));
    missing.as_object_mut().unwrap().remove("runtime");
    let reply = api.put("/functions/f", &missing).await;
    assert_error(
        &reply,
        400,
        "InvalidRequestContentException",
        &["missing field `runtime`"],
    );

    let not_json = api
        .send_raw(
            Method::PUT,
            "/functions/f",
            Some("application/json"),
            Some(b"{runtime: python".to_vec()),
        )
        .await;
    assert_error(
        &not_json,
        400,
        "InvalidRequestContentException",
        &["not valid JSON", "line 1"],
    );
    assert!(
        !not_json.text("message").contains("'?'"),
        "message names no field: {}",
        not_json.body
    );

    let mut runtime = create_body(&python_zip("x"));
    runtime["runtime"] = json!("cobol");
    let reply = api.put("/functions/f", &runtime).await;
    assert_error(
        &reply,
        400,
        "InvalidParameterValueException",
        &[
            "runtime 'cobol' is not supported",
            "python3.12",
            "nodejs20.x",
            "provided.al2023",
        ],
    );

    assert_status(&api.get("/functions/f").await, 404);
}

#[tokio::test]
async fn content_type_required() {
    let server = Server::start();
    let api = server.api();
    let body = serde_json::to_vec(&create_body(&python_zip("x"))).unwrap();

    let missing = api
        .send_raw(Method::PUT, "/functions/f", None, Some(body.clone()))
        .await;
    assert_error(
        &missing,
        415,
        "UnsupportedMediaTypeException",
        &["Content-Type is missing", "application/json"],
    );

    let text = api
        .send_raw(Method::PUT, "/functions/f", Some("text/plain"), Some(body.clone()))
        .await;
    assert_error(
        &text,
        415,
        "UnsupportedMediaTypeException",
        &["'text/plain'", "application/json"],
    );

    let with_charset = api
        .send_raw(
            Method::PUT,
            "/functions/f",
            Some("application/json; charset=utf-8"),
            Some(body),
        )
        .await;
    assert_status(&with_charset, 201);
}

#[tokio::test]
async fn configuration_defaults() {
    let server = Server::start();
    let api = server.api();
    let created = create_function(&api, "plain").await;
    let read = api.get("/functions/plain").await;
    assert_status(&read, 200);

    for configuration in [&created, &read.body] {
        assert_eq!(configuration["memory_size"], json!(128));
        assert_eq!(configuration["timeout"], json!(3));
        assert_eq!(configuration["ephemeral_storage"], json!(512));
        assert_eq!(configuration["tracing_mode"], json!("PassThrough"));
        assert_eq!(configuration["environment"], json!({"variables": {}}));
        assert_eq!(configuration["layers"], json!([]));
        assert_eq!(configuration["role"], Value::Null);
        assert_eq!(configuration["description"], json!(""));
        assert_eq!(configuration["version"], json!("$LATEST"));
        assert_eq!(configuration["state"], json!("Active"));
        assert_eq!(configuration["reserved_concurrent_executions"], Value::Null);
    }
}

#[tokio::test]
async fn configuration_round_trip() {
    let server = Server::start();
    let api = server.api();
    let requested = json!({
        "runtime": "python3.11",
        "handler": "app.handler",
        "role": "arn:aws:iam::123456789012:role/lambda-role",
        "description": "round trip",
        "memory_size": 1024,
        "timeout": 30,
        "ephemeral_storage": 2048,
        "environment": {"variables": {"DB_HOST": "db.internal", "MODE": "test"}},
        "vpc_config": {"subnet_ids": ["subnet-abc123"], "security_group_ids": ["sg-xyz789"]},
        "dead_letter_queue": "arn:aws:sqs:us-east-1:123456789012:failed-events",
        "tracing_mode": "Active",
        "layers": ["arn:aws:lambda:us-east-1:123456789012:layer:deps:3"],
    });
    let mut body = requested.clone();
    body["code"] = json!({"zip_file": base64_of(&python_zip("x"))});
    assert_status(&api.put("/functions/full", &body).await, 201);

    let read = api.get("/functions/full").await;
    for (field, value) in requested.as_object().unwrap() {
        assert_eq!(&read.body[field], value, "field {field}");
    }

    let updated = api.put("/functions/full/configuration", &json!({"timeout": 60})).await;
    assert_status(&updated, 200);
    let read = api.get("/functions/full").await;
    assert_eq!(read.body["timeout"], json!(60));
    for (field, value) in requested.as_object().unwrap() {
        if field != "timeout" {
            assert_eq!(&read.body[field], value, "field {field} after updating timeout");
        }
    }
}

#[tokio::test]
async fn auth_missing_or_wrong_key() {
    let server = Server::start();
    let api = server.api();

    let missing = api.with_key("").get("/functions").await;
    assert_error(
        &missing,
        401,
        "UnrecognizedClientException",
        &["Authorization header is missing"],
    );

    let wrong = api.with_key("wrong").get("/functions").await;
    assert_error(
        &wrong,
        401,
        "UnrecognizedClientException",
        &["is not valid", "nimbus admin key create"],
    );
    assert!(
        !wrong.text("message").contains("wrong"),
        "the key is echoed in full: {}",
        wrong.body
    );

    let long_key = format!("nmb_{}", "0123456789abcdef".repeat(4));
    let wrong_long = api.with_key(&long_key).get("/functions").await;
    assert_error(&wrong_long, 401, "UnrecognizedClientException", &["is not valid"]);
    assert!(
        !wrong_long.text("message").contains(&long_key),
        "the key is echoed in full: {}",
        wrong_long.body
    );

    let basic = api
        .http
        .get(format!("{}/functions", server.url))
        .header("Authorization", format!("Basic {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    let basic: Value = basic.json().await.unwrap();
    assert_eq!(basic["type"], json!("UnrecognizedClientException"));
    assert!(basic["message"].as_str().unwrap().contains("Bearer KEY"), "{basic}");
    assert!(!basic["message"].as_str().unwrap().contains(API_KEY), "{basic}");
}

#[tokio::test]
async fn auth_not_needed_for_health_and_openapi() {
    let server = Server::start();
    let anonymous = server.api().with_key("");

    let health = anonymous.get("/health").await;
    assert_status(&health, 200);
    assert_eq!(health.body["status"], json!("ok"));

    let openapi = anonymous.get("/openapi.json").await;
    assert_status(&openapi, 200);
    assert!(openapi.body["paths"].is_object(), "{}", openapi.body);
}

#[tokio::test]
async fn accounts_isolated() {
    let server = Server::start();
    let api = server.api();
    create_function(&api, "mine").await;
    let other = api.with_key(&create_account(&server.data_dir, "other"));

    let not_found = ["function 'mine' was not found"];
    let config = json!({"memory_size": 256});
    let code = json!({"zip_file": base64_of(&python_zip("theirs"))});
    let alias = json!({"function_version": "$LATEST"});
    let concurrency = json!({"reserved_concurrent_executions": 1});
    let requests: Vec<(Method, &str, Option<&Value>)> = vec![
        (Method::GET, "/functions/mine", None),
        (Method::PUT, "/functions/mine/configuration", Some(&config)),
        (Method::PUT, "/functions/mine/code", Some(&code)),
        (Method::POST, "/functions/mine/versions", None),
        (Method::GET, "/functions/mine/versions", None),
        (Method::GET, "/functions/mine/aliases", None),
        (Method::PUT, "/functions/mine/aliases/live", Some(&alias)),
        (Method::PUT, "/functions/mine/concurrency", Some(&concurrency)),
        (Method::GET, "/functions/mine/concurrency", None),
        (Method::DELETE, "/functions/mine", None),
    ];
    for (method, path, body) in requests {
        let reply = other.send(method.clone(), path, body).await;
        assert_eq!(reply.status, 404, "{method} {path} by another account: {}", reply.body);
        assert_error(&reply, 404, "ResourceNotFoundException", &not_found);
    }

    let list = other.get("/functions").await;
    assert_eq!(list.body["functions"], json!([]));

    // Names are per account, so the other account can use the same one.
    let theirs = other.put("/functions/mine", &create_body(&python_zip("theirs"))).await;
    assert_status(&theirs, 201);
    let theirs = theirs.body;
    let account = api.get("/account").await;
    let other_account = other.get("/account").await;
    assert_ne!(account.body["account_number"], other_account.body["account_number"]);
    assert!(theirs["function_arn"]
        .as_str()
        .unwrap()
        .contains(other_account.text("account_number")));

    let original = api.get("/functions/mine").await;
    assert_status(&original, 200);
    assert_eq!(original.body["memory_size"], json!(128));
    assert_ne!(original.body["code_sha256"], theirs["code_sha256"]);
    assert_eq!(
        api.get("/functions/mine/versions").await.body["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Sends `count` concurrent creates of `name` and returns the replies.
async fn create_concurrently(api: &Api, name: &str, count: usize) -> Vec<Reply> {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let api = api.clone();
        let path = format!("/functions/{name}");
        let body = create_body(&python_zip(&format!("copy {index}")));
        tasks.spawn(async move { api.put(&path, &body).await });
    }
    let mut replies = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        replies.push(reply.expect("create task"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_one_wins() {
    let server = Server::start();
    let api = server.api();

    for (name, count) in [("pair", 2), ("crowd", 10)] {
        let replies = create_concurrently(&api, name, count).await;
        let created = replies.iter().filter(|reply| reply.status == 201).count();
        assert_eq!(created, 1, "{name}: exactly one create should succeed: {replies:?}");
        for reply in replies.iter().filter(|reply| reply.status != 201) {
            assert_error(
                reply,
                409,
                "ResourceConflictException",
                &[&format!("function '{name}' already exists")],
            );
        }
        let winner = replies.iter().find(|reply| reply.status == 201).unwrap();
        let stored = api.get(&format!("/functions/{name}")).await;
        assert_eq!(
            stored.body["code_sha256"], winner.body["code_sha256"],
            "{name}: the winner's code is stored"
        );
    }

    let list = api.get("/functions").await;
    let names: Vec<&str> = list.body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crowd", "pair"]);
}

#[tokio::test]
async fn publish_versions_and_qualifiers() {
    let server = Server::start();
    let api = server.api();
    create_function(&api, "fn").await;

    let code = json!({"zip_file": base64_of(&python_zip("second")), "publish": true});
    let first = api.put("/functions/fn/code", &code).await;
    assert_status(&first, 200);
    assert_eq!(first.body["version"], json!("1"));
    assert!(first.text("function_arn").ends_with(":function:fn:1"), "{}", first.body);

    let unchanged = api.send(Method::POST, "/functions/fn/versions", None).await;
    assert_status(&unchanged, 200);
    assert_eq!(unchanged.body["version"], json!("1"));
    let unchanged_json = api.post("/functions/fn/versions", &json!({})).await;
    assert_status(&unchanged_json, 200);
    assert_eq!(unchanged_json.body["version"], json!("1"));

    assert_status(
        &api.put("/functions/fn/configuration", &json!({"memory_size": 256}))
            .await,
        200,
    );
    let second = api
        .post("/functions/fn/versions", &json!({"description": "more memory"}))
        .await;
    assert_status(&second, 201);
    assert_eq!(second.body["version"], json!("2"));
    assert_eq!(second.body["description"], json!("more memory"));

    let unchanged_after_description = api.post("/functions/fn/versions", &json!({})).await;
    assert_status(&unchanged_after_description, 200);
    assert_eq!(unchanged_after_description.body["version"], json!("2"));

    let version_one = api.get("/functions/fn?qualifier=1").await;
    assert_status(&version_one, 200);
    assert_eq!(version_one.body["version"], json!("1"));
    assert_eq!(version_one.body["memory_size"], json!(128));
    assert_eq!(version_one.body["code_sha256"], first.body["code_sha256"]);

    let version_two = api.get("/functions/fn?qualifier=2").await;
    assert_eq!(version_two.body["memory_size"], json!(256));

    assert_status(
        &api.put("/functions/fn/configuration", &json!({"memory_size": 512}))
            .await,
        200,
    );
    let latest = api.get("/functions/fn?qualifier=$LATEST").await;
    assert_eq!(latest.body["version"], json!("$LATEST"));
    assert_eq!(latest.body["memory_size"], json!(512));
    assert_eq!(
        api.get("/functions/fn?qualifier=1").await.body["memory_size"],
        json!(128)
    );

    let absent = api.get("/functions/fn?qualifier=9").await;
    assert_error(
        &absent,
        404,
        "ResourceNotFoundException",
        &["version 9 of function 'fn' was not found"],
    );
    let zero = api.get("/functions/fn?qualifier=0").await;
    assert_error(
        &zero,
        400,
        "InvalidParameterValueException",
        &["qualifier '0'", "numbered from 1"],
    );
}

/// Creates `name` and publishes versions 1 and 2 with memory 128 and 256.
async fn function_with_two_versions(api: &Api, name: &str) {
    create_function(api, name).await;
    assert_status(&api.post(&format!("/functions/{name}/versions"), &json!({})).await, 201);
    let path = format!("/functions/{name}/configuration");
    assert_status(&api.put(&path, &json!({"memory_size": 256})).await, 200);
    assert_status(&api.post(&format!("/functions/{name}/versions"), &json!({})).await, 201);
}

#[tokio::test]
async fn alias_routing_and_qualifier() {
    let server = Server::start();
    let api = server.api();
    function_with_two_versions(&api, "fn").await;

    let body = json!({"function_version": "1", "description": "canary",
        "routing_config": {"additional_version_weights": {"2": 0.25}}});
    let created = api.put("/functions/fn/aliases/live", &body).await;
    assert_status(&created, 201);
    assert_eq!(created.body["function_version"], json!("1"));
    assert!(
        created.text("alias_arn").ends_with(":function:fn:live"),
        "{}",
        created.body
    );

    let read = api.get("/functions/fn/aliases/live").await;
    assert_eq!(
        read.body["routing_config"],
        json!({"additional_version_weights": {"2": 0.25}})
    );
    assert_eq!(read.body["description"], json!("canary"));

    let through_alias = api.get("/functions/fn?qualifier=live").await;
    assert_status(&through_alias, 200);
    assert_eq!(through_alias.body["version"], json!("1"));
    assert_eq!(through_alias.body["memory_size"], json!(128));

    let replaced = api
        .put("/functions/fn/aliases/live", &json!({"function_version": "2"}))
        .await;
    assert_status(&replaced, 200);
    assert_eq!(replaced.body["routing_config"], Value::Null);
    assert_eq!(
        api.get("/functions/fn?qualifier=live").await.body["memory_size"],
        json!(256)
    );

    let list = api.get("/functions/fn/aliases").await;
    let names: Vec<&str> = list.body["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["live"]);

    assert_status(&api.delete("/functions/fn/aliases/live").await, 204);
    let deleted_alias = api.get("/functions/fn/aliases/live").await;
    assert_error(
        &deleted_alias,
        404,
        "ResourceNotFoundException",
        &["alias 'live' of function 'fn' was not found"],
    );
    let deleted_qualifier = api.get("/functions/fn?qualifier=live").await;
    assert_error(&deleted_qualifier, 404, "ResourceNotFoundException", &["alias 'live'"]);
}

#[tokio::test]
async fn alias_errors() {
    let server = Server::start();
    let api = server.api();
    function_with_two_versions(&api, "fn").await;
    let to_one = json!({"function_version": "1"});

    let numeric = api.put("/functions/fn/aliases/12", &to_one).await;
    assert_error(
        &numeric,
        400,
        "InvalidParameterValueException",
        &["alias name '12'", "looks like a version", "at least one letter"],
    );

    let latest = api.put("/functions/fn/aliases/$LATEST", &to_one).await;
    assert_error(
        &latest,
        400,
        "InvalidParameterValueException",
        &["alias name '$LATEST'", "cannot be $LATEST"],
    );

    let heavy = json!({"function_version": "1", "routing_config": {"additional_version_weights": {"2": 1.5}}});
    let reply = api.put("/functions/fn/aliases/live", &heavy).await;
    assert_error(
        &reply,
        400,
        "InvalidParameterValueException",
        &["weight 1.5 for version 2", "from 0 to 1"],
    );

    let unpublished = api
        .put("/functions/fn/aliases/live", &json!({"function_version": "7"}))
        .await;
    assert_error(
        &unpublished,
        400,
        "InvalidParameterValueException",
        &[
            "function_version 7",
            "not a published version",
            "POST /functions/fn/versions",
        ],
    );

    let body = json!({"function_version": "1", "routing_config": {"additional_version_weights": {"9": 0.5}}});
    let unpublished_extra = api.put("/functions/fn/aliases/live", &body).await;
    assert_error(
        &unpublished_extra,
        400,
        "InvalidParameterValueException",
        &["additional version 9", "not a published version"],
    );

    let to_alias = api
        .put("/functions/fn/aliases/live", &json!({"function_version": "prod"}))
        .await;
    assert_error(
        &to_alias,
        400,
        "InvalidParameterValueException",
        &["function_version 'prod'", "$LATEST or a published version number"],
    );

    assert_eq!(api.get("/functions/fn/aliases").await.body["aliases"], json!([]));
}

#[tokio::test]
async fn delete_version_rules() {
    let server = Server::start();
    let api = server.api();
    function_with_two_versions(&api, "fn").await;
    let body = json!({"function_version": "1", "routing_config": {"additional_version_weights": {"2": 0.25}}});
    assert_status(&api.put("/functions/fn/aliases/live", &body).await, 201);

    let main = api.delete("/functions/fn?qualifier=1").await;
    assert_error(
        &main,
        409,
        "ResourceConflictException",
        &[
            "version 1 of function 'fn'",
            "alias 'live'",
            "delete the alias or point it elsewhere",
        ],
    );
    let weighted = api.delete("/functions/fn?qualifier=2").await;
    assert_error(
        &weighted,
        409,
        "ResourceConflictException",
        &["version 2", "alias 'live'"],
    );

    let latest = api.delete("/functions/fn?qualifier=$LATEST").await;
    assert_error(
        &latest,
        400,
        "InvalidParameterValueException",
        &["$LATEST cannot be deleted", "omit the qualifier"],
    );
    let alias = api.delete("/functions/fn?qualifier=live").await;
    assert_error(
        &alias,
        400,
        "InvalidParameterValueException",
        &["'live' is an alias", "DELETE /functions/fn/aliases/live"],
    );

    // Version numbers are not reused after the newest version is deleted.
    assert_status(
        &api.put("/functions/fn/configuration", &json!({"timeout": 10})).await,
        200,
    );
    let third = api.post("/functions/fn/versions", &json!({})).await;
    assert_eq!(third.body["version"], json!("3"));
    assert_status(&api.delete("/functions/fn?qualifier=3").await, 204);
    assert_error(
        &api.get("/functions/fn?qualifier=3").await,
        404,
        "ResourceNotFoundException",
        &["version 3"],
    );
    assert_status(
        &api.put("/functions/fn/configuration", &json!({"timeout": 20})).await,
        200,
    );
    let fourth = api.post("/functions/fn/versions", &json!({})).await;
    assert_status(&fourth, 201);
    assert_eq!(fourth.body["version"], json!("4"));

    let again = api.delete("/functions/fn?qualifier=3").await;
    assert_error(&again, 404, "ResourceNotFoundException", &["3"]);

    // Deleting the alias frees version 1.
    assert_status(&api.delete("/functions/fn/aliases/live").await, 204);
    assert_status(&api.delete("/functions/fn?qualifier=1").await, 204);
}

#[tokio::test]
async fn delete_function_and_recreate() {
    let server = Server::start();
    let api = server.api();
    function_with_two_versions(&api, "fn").await;
    assert_status(
        &api.put("/functions/fn/aliases/live", &json!({"function_version": "2"}))
            .await,
        201,
    );
    assert_status(
        &api.put(
            "/functions/fn/concurrency",
            &json!({"reserved_concurrent_executions": 50}),
        )
        .await,
        200,
    );

    assert_status(&api.delete("/functions/fn").await, 204);
    let not_found = ["function 'fn' was not found"];
    assert_error(
        &api.get("/functions/fn").await,
        404,
        "ResourceNotFoundException",
        &not_found,
    );
    assert_error(
        &api.get("/functions/fn?qualifier=1").await,
        404,
        "ResourceNotFoundException",
        &not_found,
    );
    assert_error(
        &api.get("/functions/fn/aliases/live").await,
        404,
        "ResourceNotFoundException",
        &not_found,
    );
    assert_error(
        &api.get("/functions/fn/versions").await,
        404,
        "ResourceNotFoundException",
        &not_found,
    );
    assert_error(
        &api.delete("/functions/fn").await,
        404,
        "ResourceNotFoundException",
        &not_found,
    );

    let account = api.get("/account").await;
    assert_eq!(account.body["usage"]["function_count"], json!(0));
    assert_eq!(account.body["usage"]["reserved_concurrent_executions"], json!(0));

    // A new function of the same name starts without versions or aliases.
    create_function(&api, "fn").await;
    assert_eq!(api.get("/functions/fn/aliases").await.body["aliases"], json!([]));
    assert_eq!(
        api.get("/functions/fn").await.body["reserved_concurrent_executions"],
        Value::Null
    );
    let first = api.post("/functions/fn/versions", &json!({})).await;
    assert_status(&first, 201);
    assert_eq!(first.body["version"], json!("1"));
}

/// Follows `next_marker` from `path` (which already has a query) and returns the
/// pages, each as the list of `field` values of its items.
async fn collect_pages(api: &Api, path: &str, items: &str, field: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let url = match &marker {
            Some(marker) => format!("{path}&marker={marker}"),
            None => path.to_string(),
        };
        let reply = api.get(&url).await;
        assert_status(&reply, 200);
        let page = reply.body[items]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[field].as_str().unwrap().to_string())
            .collect();
        pages.push(page);
        match reply.body["next_marker"].as_str() {
            Some(next) => marker = Some(next.to_string()),
            None => return pages,
        }
        assert!(pages.len() < 20, "paging does not end: {pages:?}");
    }
}

#[tokio::test]
async fn list_versions_paging() {
    let server = Server::start();
    let api = server.api();
    create_function(&api, "fn").await;
    for memory in [256, 512, 1024] {
        assert_status(&api.post("/functions/fn/versions", &json!({})).await, 201);
        assert_status(
            &api.put("/functions/fn/configuration", &json!({"memory_size": memory}))
                .await,
            200,
        );
    }

    let pages = collect_pages(&api, "/functions/fn/versions?max_items=2", "versions", "version").await;
    assert_eq!(pages, [vec!["$LATEST", "1"], vec!["2", "3"]]);

    let single = collect_pages(&api, "/functions/fn/versions?max_items=1", "versions", "version").await;
    assert_eq!(single, [vec!["$LATEST"], vec!["1"], vec!["2"], vec!["3"]]);

    let all = api.get("/functions/fn/versions").await;
    assert_eq!(
        all.body["versions"][0]["memory_size"],
        json!(1024),
        "$LATEST comes first"
    );
    assert_eq!(all.body["next_marker"], Value::Null);

    let too_many = api.get("/functions/fn/versions?max_items=10001").await;
    assert_error(
        &too_many,
        400,
        "InvalidParameterValueException",
        &["max_items 10001", "1 to 10000"],
    );
    let bad_marker = api.get("/functions/fn/versions?marker=abc").await;
    assert_error(
        &bad_marker,
        400,
        "InvalidParameterValueException",
        &["marker 'abc'", "next_marker"],
    );
}

#[tokio::test]
async fn reserved_concurrency_limits() {
    let server = Server::start();
    let api = server.api();
    create_function(&api, "big").await;
    create_function(&api, "small").await;

    let reserved = api
        .put(
            "/functions/big/concurrency",
            &json!({"reserved_concurrent_executions": 900}),
        )
        .await;
    assert_status(&reserved, 200);
    assert_eq!(reserved.body["reserved_concurrent_executions"], json!(900));

    let over = api
        .put(
            "/functions/small/concurrency",
            &json!({"reserved_concurrent_executions": 1}),
        )
        .await;
    assert_error(
        &over,
        400,
        "InvalidParameterValueException",
        &[
            "reserved concurrency 1",
            "at least 100 must stay unreserved",
            "reserve at most 0",
        ],
    );

    let zero = api
        .put(
            "/functions/small/concurrency",
            &json!({"reserved_concurrent_executions": 0}),
        )
        .await;
    assert_status(&zero, 200);
    assert_eq!(
        api.get("/functions/small/concurrency").await.body["reserved_concurrent_executions"],
        json!(0)
    );
    assert_eq!(
        api.get("/functions/big/concurrency").await.body["reserved_concurrent_executions"],
        json!(900)
    );
    assert_eq!(
        api.get("/functions/big").await.body["reserved_concurrent_executions"],
        json!(900)
    );

    let account = api.get("/account").await;
    assert_status(&account, 200);
    assert_eq!(account.body["limits"]["concurrent_executions"], json!(1000));
    assert_eq!(account.body["limits"]["unreserved_concurrent_executions"], json!(100));
    assert_eq!(account.body["usage"]["reserved_concurrent_executions"], json!(900));
    assert_eq!(account.body["usage"]["function_count"], json!(2));

    let negative = api
        .put(
            "/functions/small/concurrency",
            &json!({"reserved_concurrent_executions": -1}),
        )
        .await;
    assert_error(
        &negative,
        400,
        "InvalidParameterValueException",
        &["reserved_concurrent_executions -1 is out of range"],
    );

    assert_status(&api.delete("/functions/big/concurrency").await, 204);
    assert_eq!(
        api.get("/functions/big/concurrency").await.body["reserved_concurrent_executions"],
        Value::Null
    );
    let account = api.get("/account").await;
    assert_eq!(account.body["limits"]["unreserved_concurrent_executions"], json!(1000));
    assert_eq!(account.body["usage"]["reserved_concurrent_executions"], json!(0));

    let now_fits = api
        .put(
            "/functions/small/concurrency",
            &json!({"reserved_concurrent_executions": 900}),
        )
        .await;
    assert_status(&now_fits, 200);
}

#[tokio::test]
async fn account_limits_and_usage() {
    let server = Server::start();
    let api = server.api();

    let empty = api.get("/account").await;
    assert_status(&empty, 200);
    assert_eq!(empty.body["name"], json!("default"));
    assert_eq!(empty.body["limits"]["concurrent_executions"], json!(1000));
    assert_eq!(empty.body["limits"]["unreserved_concurrent_executions"], json!(1000));
    assert_eq!(empty.body["limits"]["code_size_zipped"], json!(50 * MIB));
    assert_eq!(empty.body["limits"]["code_size_unzipped"], json!(250 * MIB));
    assert_eq!(empty.body["usage"]["function_count"], json!(0));
    assert_eq!(empty.body["usage"]["total_code_size"], json!(0));

    let created = create_function(&api, "fn").await;
    assert_status(&api.post("/functions/fn/versions", &json!({})).await, 201);
    let size = created["code_size"].as_u64().unwrap();
    let used = api.get("/account").await;
    assert_eq!(used.body["usage"]["function_count"], json!(1));
    assert_eq!(
        used.body["usage"]["total_code_size"],
        json!(2 * size),
        "$LATEST and version 1"
    );
}

#[tokio::test]
async fn list_functions_paging() {
    let server = Server::start();
    let api = server.api();
    let names = ["fn-e", "fn-b", "fn-g", "fn-a", "fn-d", "fn-f", "fn-c"];
    for name in names {
        create_function(&api, name).await;
    }

    let pages = collect_pages(&api, "/functions?max_items=3", "functions", "function_name").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1]);
    let listed: Vec<String> = pages.concat();
    let mut expected: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    let zero = api.get("/functions?max_items=0").await;
    assert_error(
        &zero,
        400,
        "InvalidParameterValueException",
        &["max_items 0 is out of range", "1 to 10000"],
    );
    let over = api.get("/functions?max_items=10001").await;
    assert_error(
        &over,
        400,
        "InvalidParameterValueException",
        &["max_items 10001 is out of range", "1 to 10000"],
    );
    let text = api.get("/functions?max_items=many").await;
    assert_error(&text, 400, "InvalidParameterValueException", &["max_items"]);
    let unknown = api.get("/functions?limit=3").await;
    assert_error(&unknown, 400, "InvalidParameterValueException", &["limit"]);
}

#[tokio::test]
async fn data_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    let args = ["--api-key", API_KEY];
    let server = Server::start_in(data.path(), &args, &[]);
    let api = server.api();

    let created = create_function(&api, "keep").await;
    assert_status(&api.post("/functions/keep/versions", &json!({})).await, 201);
    assert_status(
        &api.put("/functions/keep/configuration", &json!({"memory_size": 512}))
            .await,
        200,
    );
    assert_status(
        &api.put("/functions/keep/aliases/live", &json!({"function_version": "1"}))
            .await,
        201,
    );
    assert_status(
        &api.put(
            "/functions/keep/concurrency",
            &json!({"reserved_concurrent_executions": 5}),
        )
        .await,
        200,
    );
    let object = api.put_object("code", "dir/app.zip", python_zip("object")).await;
    assert_status(&object, 201);
    server.stop();

    let server = Server::start_in(data.path(), &args, &[]);
    let api = server.api();
    let latest = api.get("/functions/keep").await;
    assert_status(&latest, 200);
    assert_eq!(latest.body["memory_size"], json!(512));
    assert_eq!(latest.body["code_sha256"], created["code_sha256"]);
    assert_eq!(latest.body["reserved_concurrent_executions"], json!(5));

    let version = api.get("/functions/keep?qualifier=1").await;
    assert_eq!(version.body["memory_size"], json!(128));
    let alias = api.get("/functions/keep/aliases/live").await;
    assert_eq!(alias.body["function_version"], json!("1"));
    let through_alias = api.get("/functions/keep?qualifier=live").await;
    assert_eq!(through_alias.body["version"], json!("1"));

    let version_id = object.text("version_id");
    let from_object = api
        .put(
            "/functions/later",
            &create_from_object("code", "dir/app.zip", Some(version_id)),
        )
        .await;
    assert_status(&from_object, 201);
    assert_eq!(from_object.body["code_sha256"], object.body["sha256"]);
}

#[tokio::test]
async fn code_object_versions() {
    let server = Server::start();
    let api = server.api();
    let first_zip = python_zip("first");

    let first = api.put_object("code", "dir/app.zip", first_zip.clone()).await;
    assert_status(&first, 201);
    assert_eq!(first.body["bucket"], json!("code"));
    assert_eq!(first.body["key"], json!("dir/app.zip"));
    assert_eq!(first.body["size"], json!(first_zip.len()));
    assert!(!first.text("version_id").is_empty(), "{}", first.body);

    let from_latest = api
        .put("/functions/one", &create_from_object("code", "dir/app.zip", None))
        .await;
    assert_status(&from_latest, 201);
    assert_eq!(from_latest.body["code_sha256"], first.body["sha256"]);
    let inline = api.put("/functions/inline", &create_body(&first_zip)).await;
    assert_eq!(
        inline.body["code_sha256"], first.body["sha256"],
        "inline and object uploads hash the same zip alike"
    );

    let second = api.put_object("code", "dir/app.zip", python_zip("second")).await;
    assert_status(&second, 201);
    assert_ne!(second.body["version_id"], first.body["version_id"]);
    assert_ne!(second.body["sha256"], first.body["sha256"]);

    let pinned = api
        .put(
            "/functions/pinned",
            &create_from_object("code", "dir/app.zip", Some(first.text("version_id"))),
        )
        .await;
    assert_status(&pinned, 201);
    assert_eq!(pinned.body["code_sha256"], first.body["sha256"]);

    let newest = api
        .put("/functions/newest", &create_from_object("code", "dir/app.zip", None))
        .await;
    assert_eq!(newest.body["code_sha256"], second.body["sha256"]);

    let code = json!({"s3_bucket": "code", "s3_key": "dir/app.zip", "s3_object_version": first.text("version_id")});
    let updated = api.put("/functions/newest/code", &code).await;
    assert_status(&updated, 200);
    assert_eq!(updated.body["code_sha256"], first.body["sha256"]);
}

#[tokio::test]
async fn code_object_errors() {
    let server = Server::start();
    let api = server.api();
    let zip = python_zip("x");

    let text = api
        .send_raw(
            Method::PUT,
            "/code-objects/code/app.zip",
            Some("text/plain"),
            Some(zip.clone()),
        )
        .await;
    assert_error(
        &text,
        415,
        "UnsupportedMediaTypeException",
        &["'text/plain'", "application/zip"],
    );
    let missing = api
        .send_raw(Method::PUT, "/code-objects/code/app.zip", None, Some(zip.clone()))
        .await;
    assert_error(&missing, 415, "UnsupportedMediaTypeException", &["application/zip"]);

    let bad_bucket = api.put_object("A_B", "app.zip", zip.clone()).await;
    assert_error(
        &bad_bucket,
        400,
        "InvalidParameterValueException",
        &["bucket name 'A_B'", "lowercase letters"],
    );

    let empty = api.put_object("code", "app.zip", Vec::new()).await;
    assert_error(
        &empty,
        400,
        "InvalidParameterValueException",
        &["'code/app.zip' is empty"],
    );

    let no_key = api.with_key("").put_object("code", "app.zip", zip).await;
    assert_error(
        &no_key,
        401,
        "UnrecognizedClientException",
        &["Authorization header is missing"],
    );

    let wrong_method = api.get("/code-objects/code/app.zip").await;
    assert_error(&wrong_method, 405, "MethodNotAllowedException", &["method GET"]);
}

#[tokio::test]
async fn code_object_other_account() {
    let server = Server::start();
    let api = server.api();
    assert_status(&api.put_object("code", "dir/app.zip", python_zip("mine")).await, 201);
    let other = api.with_key(&create_account(&server.data_dir, "other"));

    let reply = other
        .put("/functions/theirs", &create_from_object("code", "dir/app.zip", None))
        .await;
    assert_error(
        &reply,
        400,
        "InvalidParameterValueException",
        &["code object 'dir/app.zip' in bucket 'code' not found"],
    );
    assert_status(&other.get("/functions/theirs").await, 404);

    // The other account has its own bucket of the same name.
    assert_status(
        &other.put_object("code", "dir/app.zip", python_zip("theirs")).await,
        201,
    );
    assert_status(
        &other
            .put("/functions/theirs", &create_from_object("code", "dir/app.zip", None))
            .await,
        201,
    );
}

/// Every route of the API with its methods, in lowercase as in OpenAPI.
const ROUTES: &[(&str, &[&str])] = &[
    ("/account", &["get"]),
    ("/code-objects/{bucket}/{key}", &["put"]),
    ("/functions", &["get"]),
    ("/functions/{name}", &["delete", "get", "put"]),
    ("/functions/{name}/aliases", &["get"]),
    ("/functions/{name}/aliases/{alias}", &["delete", "get", "put"]),
    ("/functions/{name}/code", &["put"]),
    ("/functions/{name}/concurrency", &["delete", "get", "put"]),
    ("/functions/{name}/configuration", &["put"]),
    ("/functions/{name}/invocations", &["get", "post"]),
    ("/functions/{name}/logs", &["get"]),
    ("/functions/{name}/provisioned-concurrency", &["delete", "get", "put"]),
    ("/functions/{name}/versions", &["get", "post"]),
];

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// Returns the (path, method) pairs that an OpenAPI document describes.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths is an object") {
        for method in item.as_object().expect("a path item is an object").keys() {
            if HTTP_METHODS.contains(&method.as_str()) {
                operations.insert((path.clone(), method.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let server = Server::start();
    let document = server.api().with_key("").get("/openapi.json").await;
    assert_status(&document, 200);

    let version = document.text("openapi");
    assert!(
        version.starts_with("3."),
        "OpenAPI version should be 3.x, not {version:?}"
    );

    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|method| (path.to_string(), method.to_string())))
        .collect();
    assert_eq!(documented_operations(&document.body), expected);
}

#[tokio::test]
async fn openapi_routes_all_served() {
    let server = Server::start();
    let api = server.api();
    let document = api.get("/openapi.json").await;

    for (path, method) in documented_operations(&document.body) {
        let concrete = path
            .replace("{name}", "placeholder")
            .replace("{alias}", "placeholder-alias")
            .replace("{bucket}", "placeholder-bucket")
            .replace("{key}", "dir/app.zip");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let reply = match method {
            Method::PUT if path.starts_with("/code-objects/") => {
                api.send_raw(
                    method.clone(),
                    &concrete,
                    Some("application/zip"),
                    Some(python_zip("x")),
                )
                .await
            }
            Method::PUT | Method::POST => api.send(method.clone(), &concrete, Some(&json!({}))).await,
            _ => api.send(method.clone(), &concrete, None).await,
        };
        assert_ne!(
            reply.status, 405,
            "{method} {concrete} is documented but not allowed: {}",
            reply.body
        );
        assert!(
            !reply.text("message").contains("no API route matches"),
            "{method} {concrete} is documented but has no route: {}",
            reply.body
        );
    }
}
