//! List commands: paging arguments and the fetching of one or all pages.

use std::collections::HashSet;

use anyhow::bail;
use serde_json::{json, Value};

use super::api::ApiClient;

/// Paging of list commands. Without `--max-items` every page is fetched.
#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// Fetch one page of at most this many items.
    #[arg(long, value_name = "N")]
    pub max_items: Option<u32>,

    /// Start after this marker, the `next_marker` of an earlier page.
    #[arg(long, value_name = "MARKER")]
    pub marker: Option<String>,
}

/// The items of one or more pages of a list response.
pub struct Listing {
    /// The response body to print with `--json`: the body as received for a single
    /// page, or the items of all pages merged into one body with `next_marker` null.
    pub body: Value,
    field: &'static str,
    next_marker: Option<String>,
}

impl Listing {
    pub fn items(&self) -> &[Value] {
        self.body
            .get(self.field)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Prints to stderr the `--marker` option that fetches the next page, if there is one.
    pub fn print_next_marker_hint(&self) {
        if let Some(marker) = &self.next_marker {
            eprintln!("more {} follow; pass --marker {marker} for the next page", self.field);
        }
    }
}

/// Fetches a list from `path`, whose response has the items in `field` and the
/// marker of the next page in `next_marker`. With `--max-items` it fetches one page,
/// and otherwise it follows `next_marker` to the last page.
pub async fn fetch_pages(
    api: &ApiClient,
    path: &[&str],
    field: &'static str,
    page: &PageArgs,
) -> anyhow::Result<Listing> {
    let mut marker = page.marker.clone();
    let mut seen_markers = HashSet::new();
    let mut items = Vec::new();
    let mut first_page = true;
    loop {
        let mut query = Vec::new();
        if let Some(max_items) = page.max_items {
            query.push(("max_items", max_items.to_string()));
        }
        if let Some(marker) = &marker {
            query.push(("marker", marker.clone()));
        }
        let response = api.get(path, &query).await?;
        let body = response.json_body()?;
        let Some(page_items) = body.get(field).and_then(Value::as_array) else {
            bail!("the response to GET /{} has no '{field}' list", path.join("/"));
        };
        let next_marker = body.get("next_marker").and_then(Value::as_str).map(str::to_string);

        if page.max_items.is_some() {
            return Ok(Listing {
                body: body.clone(),
                field,
                next_marker,
            });
        }
        if first_page && next_marker.is_none() {
            return Ok(Listing {
                body: body.clone(),
                field,
                next_marker: None,
            });
        }
        first_page = false;
        items.extend(page_items.iter().cloned());
        let Some(next_marker) = next_marker else {
            break;
        };
        if !seen_markers.insert(next_marker.clone()) {
            bail!("the server returned next_marker '{next_marker}' a second time; stopping to avoid an endless loop");
        }
        marker = Some(next_marker);
    }
    let body = json!({ field: items, "next_marker": null });
    Ok(Listing {
        body,
        field,
        next_marker: None,
    })
}
