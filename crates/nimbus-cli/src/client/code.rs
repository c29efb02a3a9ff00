//! `nimbus code`: code objects in the server's object store, which `function create`
//! and `update-code` can use with `--s3-bucket` and `--s3-key`.

use std::path::PathBuf;

use super::api::{ApiClient, RequestBody};
use super::{output, package};

#[derive(Debug, clap::Subcommand)]
pub enum CodeCommand {
    /// Upload a zip file, or a directory zipped on the fly, as a new object version.
    Upload {
        /// Bucket name: 3 to 63 lowercase letters, digits, '.' and '-'.
        bucket: String,
        /// Object key; '/' separates path segments, as in S3.
        key: String,
        /// Directory to zip, or a .zip file to send as is.
        path: PathBuf,
    },
}

const OBJECT_FIELDS: &[&str] = &["version_id", "bucket", "key", "size", "sha256"];

pub async fn run(api: &ApiClient, json: bool, command: CodeCommand) -> anyhow::Result<()> {
    let CodeCommand::Upload { bucket, key, path } = command;
    let zip = package::read_package(&path)?;

    let mut segments = vec!["code-objects", bucket.as_str()];
    segments.extend(key.split('/'));
    let response = api.put(&segments, RequestBody::Zip(zip)).await?;
    let object = response.json_body()?;
    if json {
        output::print_json(object);
    } else {
        output::print_fields(&output::object_fields(object, OBJECT_FIELDS));
    }
    Ok(())
}
