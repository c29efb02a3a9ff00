//! Human-readable output: aligned `key: value` lines, tables, and the rendering of
//! JSON values in them.

use serde_json::{Map, Value};

/// Text shown for a null or empty value.
const NONE: &str = "-";

/// Field order of a FunctionConfiguration in `key: value` output. Fields that the
/// server adds later are printed after these, sorted by name.
pub const FUNCTION_FIELDS: &[&str] = &[
    "function_name",
    "function_arn",
    "version",
    "description",
    "runtime",
    "handler",
    "role",
    "memory_size",
    "timeout",
    "ephemeral_storage",
    "code_size",
    "code_sha256",
    "environment",
    "layers",
    "vpc_config",
    "dead_letter_queue",
    "tracing_mode",
    "reserved_concurrent_executions",
    "state",
    "state_reason",
    "last_modified",
];

pub const ALIAS_FIELDS: &[&str] = &["name", "alias_arn", "function_version", "routing_config", "description"];

pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a serde_json::Value always serializes")
    );
}

/// Prints `key: value` lines with all values starting in one column. A value with
/// several lines continues in that column.
pub fn print_fields(fields: &[(String, String)]) {
    let width = fields.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0) + 1;
    for (key, value) in fields {
        let mut lines = value.split('\n');
        let first = lines.next().unwrap_or_default();
        println!("{:<width$} {first}", format!("{key}:"), width = width);
        for line in lines {
            println!("{:<width$} {line}", "", width = width);
        }
    }
}

/// Prints a table with a header row, columns separated by two spaces.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// Returns the fields of a JSON object as `key: value` rows: the `order` fields first,
/// then the others sorted by name. Values get units where the field name implies them.
pub fn object_fields(object: &Value, order: &[&str]) -> Vec<(String, String)> {
    let Some(map) = object.as_object() else {
        return vec![("value".to_string(), render_value(object))];
    };
    let mut fields = Vec::new();
    for key in order {
        if let Some(value) = map.get(*key) {
            fields.push((key.to_string(), render_field(key, value)));
        }
    }
    let mut others: Vec<&String> = map.keys().filter(|key| !order.contains(&key.as_str())).collect();
    others.sort();
    for key in others {
        fields.push((key.clone(), render_field(key, &map[key])));
    }
    fields
}

/// Returns every scalar of a JSON object as a row, sorted by key at each level and
/// naming nested fields with dotted paths such as `limits.concurrent_executions`.
pub fn flatten_fields(value: &Value) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    flatten_into("", value, &mut fields);
    fields
}

fn flatten_into(prefix: &str, value: &Value, fields: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, nested) in sorted_entries(map) {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(&path, nested, fields);
            }
        }
        _ => {
            let key = if prefix.is_empty() { "value" } else { prefix };
            fields.push((key.to_string(), render_value(value)));
        }
    }
}

fn render_field(key: &str, value: &Value) -> String {
    let unit = match key {
        "memory_size" | "ephemeral_storage" => Some("MB"),
        "timeout" => Some("s"),
        "code_size" | "size" => Some("bytes"),
        _ => None,
    };
    match (unit, value) {
        (Some(unit), Value::Number(number)) => format!("{number} {unit}"),
        // The variables are the only content of `environment`, so print them directly.
        _ if key == "environment" => render_value(value.get("variables").unwrap_or(value)),
        _ if key == "routing_config" => render_weights(value),
        _ => render_value(value),
    }
}

/// Renders a value for a `key: value` line: an array or object takes one line per
/// element, an object's elements as `key=value`.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => sorted_entries(map)
            .into_iter()
            .map(|(key, nested)| format!("{key}={}", render_inline(nested)))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) if !items.is_empty() => items.iter().map(render_inline).collect::<Vec<_>>().join("\n"),
        _ => render_inline(value),
    }
}

/// Renders a value on one line. Control characters are escaped, so a value cannot
/// break the layout or send terminal escape sequences.
pub fn render_inline(value: &Value) -> String {
    let text = match value {
        Value::Null => return NONE.to_string(),
        Value::String(text) if text.is_empty() => return NONE.to_string(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => return NONE.to_string(),
        Value::Array(items) => items.iter().map(render_inline).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => return NONE.to_string(),
        Value::Object(map) => render_map_inline(map),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
    };
    escape_control(&text)
}

fn render_map_inline(map: &Map<String, Value>) -> String {
    sorted_entries(map)
        .into_iter()
        .map(|(key, nested)| format!("{key}={}", render_inline(nested)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders an alias's routing_config as `VERSION=WEIGHT` pairs, or `-` without any.
pub fn render_weights(routing_config: &Value) -> String {
    match routing_config
        .get("additional_version_weights")
        .and_then(Value::as_object)
    {
        Some(weights) if !weights.is_empty() => {
            let pairs: Vec<String> = sorted_entries(weights)
                .into_iter()
                .map(|(version, weight)| format!("{version}={}", render_inline(weight)))
                .collect();
            pairs.join(",")
        }
        _ => NONE.to_string(),
    }
}

/// Returns field `key` of `object` rendered for a table cell, or `-` if it is absent.
pub fn cell(object: &Value, key: &str) -> String {
    object.get(key).map(render_inline).unwrap_or_else(|| NONE.to_string())
}

/// Returns the entries of `map` sorted by key, whether or not serde_json was built
/// with `preserve_order`.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn escape_control(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_in_order_then_sorted() {
        let config = json!({"zeta": 1, "timeout": 3, "function_name": "f", "alpha": true, "memory_size": 128});
        let fields = object_fields(&config, FUNCTION_FIELDS);
        let keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["function_name", "memory_size", "timeout", "alpha", "zeta"]);
        assert_eq!(fields[1].1, "128 MB");
        assert_eq!(fields[2].1, "3 s");
    }

    #[test]
    fn environment_shows_variables() {
        let config = json!({"environment": {"variables": {"A": "1", "B": "x=y"}}});
        assert_eq!(object_fields(&config, FUNCTION_FIELDS)[0].1, "A=1\nB=x=y");
        let empty = json!({"environment": {"variables": {}}});
        assert_eq!(object_fields(&empty, FUNCTION_FIELDS)[0].1, "-");
    }

    #[test]
    fn nested_values_render() {
        let vpc = json!({"subnet_ids": ["subnet-1", "subnet-2"], "security_group_ids": []});
        assert_eq!(render_value(&vpc), "security_group_ids=-\nsubnet_ids=subnet-1,subnet-2");
        assert_eq!(render_value(&json!(["a", "b"])), "a\nb");
        assert_eq!(render_value(&Value::Null), "-");
        assert_eq!(render_value(&json!("")), "-");
    }

    #[test]
    fn weights_render() {
        let config = json!({"additional_version_weights": {"2": 0.25}});
        assert_eq!(render_weights(&config), "2=0.25");
        assert_eq!(render_weights(&Value::Null), "-");
    }

    #[test]
    fn control_characters_escaped() {
        assert_eq!(render_inline(&json!("a\nb\u{1b}[2J")), "a\\nb\\u{1b}[2J");
    }

    #[test]
    fn flatten_uses_dotted_paths() {
        let account =
            json!({"account_id": "a1", "limits": {"concurrent_executions": 1000, "code_size": {"zipped": 5}}});
        let fields = flatten_fields(&account);
        assert_eq!(
            fields,
            vec![
                ("account_id".to_string(), "a1".to_string()),
                ("limits.code_size.zipped".to_string(), "5".to_string()),
                ("limits.concurrent_executions".to_string(), "1000".to_string()),
            ]
        );
    }
}
