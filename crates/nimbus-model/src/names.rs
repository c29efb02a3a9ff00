use std::fmt;

use crate::error::ValidationError;

pub const MAX_FUNCTION_NAME_LEN: usize = 64;
pub const MAX_ALIAS_NAME_LEN: usize = 128;
pub const LATEST: &str = "$LATEST";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks a function name: 1–64 ASCII letters, digits, hyphens and underscores.
/// Names are case-sensitive, so `Hello` and `hello` are two functions.
pub fn validate_function_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_FUNCTION_NAME_LEN {
        return Err(ValidationError::new(
            "function_name",
            format!(
                "function name '{name}' is {} characters long; use 1 to {MAX_FUNCTION_NAME_LEN} characters",
                name.chars().count()
            ),
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(ValidationError::new(
            "function_name",
            format!("function name '{name}' contains '{bad}'; use only letters, digits, hyphens and underscores"),
        ));
    }
    Ok(())
}

/// Checks an alias name: 1–128 letters, digits, hyphens and underscores that do not
/// form a version number or `$LATEST`, so a qualifier is never ambiguous.
pub fn validate_alias_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_ALIAS_NAME_LEN {
        return Err(ValidationError::new(
            "alias_name",
            format!(
                "alias name '{name}' is {} characters long; use 1 to {MAX_ALIAS_NAME_LEN} characters",
                name.chars().count()
            ),
        ));
    }
    if name == LATEST || name.chars().all(|c| c.is_ascii_digit()) {
        return Err(ValidationError::new(
            "alias_name",
            format!(
                "alias name '{name}' looks like a version; an alias name must contain at least one letter, hyphen or underscore and cannot be $LATEST"
            ),
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(ValidationError::new(
            "alias_name",
            format!("alias name '{name}' contains '{bad}'; use only letters, digits, hyphens and underscores"),
        ));
    }
    Ok(())
}

/// Target of a `qualifier` parameter: the unpublished `$LATEST`, a published
/// version number, or an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    Latest,
    Version(u32),
    Alias(String),
}

impl Qualifier {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if value == LATEST {
            return Ok(Qualifier::Latest);
        }
        if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
            return match value.parse::<u32>() {
                Ok(number) if number >= 1 => Ok(Qualifier::Version(number)),
                _ => Err(ValidationError::new(
                    "qualifier",
                    format!("qualifier '{value}' is not a valid version; versions are numbered from 1"),
                )),
            };
        }
        validate_alias_name(value).map_err(|_| {
            ValidationError::new(
                "qualifier",
                format!("qualifier '{value}' is invalid; use $LATEST, a version number or an alias name"),
            )
        })?;
        Ok(Qualifier::Alias(value.to_string()))
    }

    /// Parses a version reference that must not be an alias: `$LATEST` or a number.
    pub fn parse_version(field: &str, value: &str) -> Result<Self, ValidationError> {
        match Self::parse(value) {
            Ok(Qualifier::Alias(_)) | Err(_) => Err(ValidationError::new(
                field,
                format!("{field} '{value}' is invalid; use $LATEST or a published version number"),
            )),
            Ok(version) => Ok(version),
        }
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Latest => f.write_str(LATEST),
            Qualifier::Version(number) => write!(f, "{number}"),
            Qualifier::Alias(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_name_accepts_allowed_characters() {
        for name in ["a", "Hello_World-1", &"x".repeat(64)] {
            assert_eq!(validate_function_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn function_name_rejects_length() {
        let empty = validate_function_name("").unwrap_err();
        assert!(empty.message.contains("1 to 64"), "{}", empty.message);

        let long = "x".repeat(65);
        let error = validate_function_name(&long).unwrap_err();
        assert!(error.message.contains("65 characters"), "{}", error.message);
    }

    #[test]
    fn function_name_rejects_characters() {
        for (name, bad) in [("my.fn", '.'), ("my fn", ' '), ("fn/x", '/'), ("héllo", 'é')] {
            let error = validate_function_name(name).unwrap_err();
            assert_eq!(error.field, "function_name");
            assert!(error.message.contains(&format!("'{bad}'")), "{}", error.message);
        }
    }

    #[test]
    fn alias_name_rejects_versions() {
        for name in ["1", "42", "$LATEST"] {
            let error = validate_alias_name(name).unwrap_err();
            assert!(error.message.contains("looks like a version"), "{}", error.message);
        }
        assert_eq!(validate_alias_name("v1"), Ok(()));
        assert_eq!(validate_alias_name("prod"), Ok(()));
    }

    #[test]
    fn alias_name_rejects_length_and_characters() {
        assert!(validate_alias_name(&"a".repeat(129)).is_err());
        assert!(validate_alias_name("").is_err());
        let error = validate_alias_name("pro:d").unwrap_err();
        assert!(error.message.contains("':'"), "{}", error.message);
    }

    #[test]
    fn qualifier_parses_each_kind() {
        assert_eq!(Qualifier::parse("$LATEST"), Ok(Qualifier::Latest));
        assert_eq!(Qualifier::parse("7"), Ok(Qualifier::Version(7)));
        assert_eq!(Qualifier::parse("live"), Ok(Qualifier::Alias("live".into())));
        assert!(Qualifier::parse("0").is_err());
        assert!(Qualifier::parse("99999999999").is_err());
        assert!(Qualifier::parse("a b").is_err());
        assert!(Qualifier::parse("").is_err());
    }

    #[test]
    fn version_reference_rejects_alias() {
        let error = Qualifier::parse_version("function_version", "prod").unwrap_err();
        assert_eq!(error.field, "function_version");
        assert!(error.message.contains("'prod'"), "{}", error.message);
    }
}
