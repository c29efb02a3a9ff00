use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;
use crate::names::Qualifier;

/// Traffic split of an alias: one additional version and the share of invocations
/// it receives, between 0 and 1; the alias's main version gets the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

/// Body of `PUT /functions/{name}/aliases/{alias}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    /// The version the alias points to: a published version number or `$LATEST`.
    pub function_version: String,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfig>,
}

/// An alias as stored and returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alias {
    pub name: String,
    pub alias_arn: String,
    pub function_version: String,
    pub description: String,
    pub routing_config: Option<RoutingConfig>,
}

/// An alias request whose fields passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidAlias {
    pub function_version: Qualifier,
    pub description: String,
    /// The additional version and its weight, if traffic is split.
    pub additional_version: Option<(u32, f64)>,
}

impl AliasRequest {
    /// Checks the shape of the request; whether the versions exist is the caller's
    /// check, because it needs the store.
    pub fn validate(&self) -> Result<ValidAlias, ValidationError> {
        let function_version = Qualifier::parse_version("function_version", &self.function_version)?;
        let description = self.description.clone().unwrap_or_default();
        if description.chars().count() > crate::config::MAX_DESCRIPTION_LEN {
            return Err(ValidationError::new(
                "description",
                format!(
                    "description is {} characters long; use at most 256",
                    description.chars().count()
                ),
            ));
        }

        let weights = self
            .routing_config
            .as_ref()
            .map(|config| &config.additional_version_weights)
            .filter(|weights| !weights.is_empty());
        let Some(weights) = weights else {
            return Ok(ValidAlias {
                function_version,
                description,
                additional_version: None,
            });
        };

        const FIELD: &str = "routing_config.additional_version_weights";
        if weights.len() > 1 {
            return Err(ValidationError::new(
                FIELD,
                format!(
                    "routing_config names {} additional versions; an alias can split traffic with one",
                    weights.len()
                ),
            ));
        }
        let (version, weight) = weights.iter().next().expect("one entry");
        let Qualifier::Version(additional) = Qualifier::parse_version(FIELD, version)? else {
            return Err(ValidationError::new(
                FIELD,
                "routing_config cannot route to $LATEST; publish a version and route to its number",
            ));
        };
        let Qualifier::Version(main) = function_version else {
            return Err(ValidationError::new(
                FIELD,
                "an alias that points to $LATEST cannot split traffic; point it to a published version",
            ));
        };
        if additional == main {
            return Err(ValidationError::new(
                FIELD,
                format!("additional version {additional} is the alias's own version; name a different version"),
            ));
        }
        if !weight.is_finite() || *weight < 0.0 || *weight > 1.0 {
            return Err(ValidationError::new(
                FIELD,
                format!("weight {weight} for version {additional} is out of range; use a number from 0 to 1"),
            ));
        }
        Ok(ValidAlias {
            function_version,
            description,
            additional_version: Some((additional, *weight)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: &str, weights: &[(&str, f64)]) -> AliasRequest {
        AliasRequest {
            function_version: version.to_string(),
            description: None,
            routing_config: Some(RoutingConfig {
                additional_version_weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            }),
        }
    }

    #[test]
    fn alias_with_weights() {
        let valid = request("1", &[("2", 0.3)]).validate().unwrap();
        assert_eq!(valid.function_version, Qualifier::Version(1));
        assert_eq!(valid.additional_version, Some((2, 0.3)));
    }

    #[test]
    fn alias_without_weights() {
        let valid = request("$LATEST", &[]).validate().unwrap();
        assert_eq!(valid.function_version, Qualifier::Latest);
        assert_eq!(valid.additional_version, None);
    }

    #[test]
    fn alias_weight_rules() {
        let cases = [
            (request("1", &[("2", 1.5)]), "weight 1.5 for version 2 is out of range"),
            (
                request("1", &[("2", -0.1)]),
                "weight -0.1 for version 2 is out of range",
            ),
            (request("1", &[("1", 0.5)]), "is the alias's own version"),
            (request("1", &[("2", 0.2), ("3", 0.2)]), "names 2 additional versions"),
            (request("$LATEST", &[("2", 0.2)]), "points to $LATEST cannot split"),
            (request("1", &[("$LATEST", 0.2)]), "cannot route to $LATEST"),
            (request("1", &[("beta", 0.2)]), "'beta' is invalid"),
        ];
        for (alias, expected) in cases {
            let error = alias.validate().unwrap_err();
            assert_eq!(error.field, "routing_config.additional_version_weights");
            assert!(
                error.message.contains(expected),
                "{} should contain {expected}",
                error.message
            );
        }
    }

    #[test]
    fn alias_version_must_not_be_alias() {
        let error = request("prod", &[]).validate().unwrap_err();
        assert_eq!(error.field, "function_version");
    }
}
