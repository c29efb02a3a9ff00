//! Code packages for Nimbus functions: zip validation, SHA-256 content addressing and
//! the origin object store that keeps packages and uploaded code objects.

pub mod origin;
pub mod package;

pub use origin::{validate_bucket_name, validate_object_key, ObjectVersion, OriginError, OriginStore};
pub use package::{decode_base64_zip, validate_zip, PackageError, PackageLimits, ValidatedPackage};
