//! Bundles jhe answers with: the searchset of a search (§6.6) and the batch-response of an upload (§6.8).

use serde::Serialize;
use serde::ser::SerializeSeq;

use super::outcome::OperationOutcome;

/// The `link` URLs of one search page, absolute, built by the API from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchsetLinks {
    /// The request URL (always emitted).
    pub self_url: String,
    /// Only when the page is not the first.
    pub previous: Option<String>,
    /// Only when more results follow.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Link<'a> {
    relation: &'static str,
    url: &'a str,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct EmptyObject {}

/// `entry`: each resource wrapped as `{"resource": …}` (no `fullUrl`, as in the reference).
struct Entries<'a, R>(&'a [R]);

#[derive(Serialize)]
struct Entry<'a, R> {
    resource: &'a R,
}

impl<R: Serialize> Serialize for Entries<'_, R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for resource in self.0 {
            seq.serialize_element(&Entry { resource })?;
        }
        seq.end()
    }
}

/// `{"resourceType":"Bundle","type":"searchset","total","entry","link","meta":{}}`; `entry` and `link` are always
/// present (the Python client fails without them).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchsetBundle<'a, R> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    total: u64,
    entry: Entries<'a, R>,
    link: Vec<Link<'a>>,
    meta: EmptyObject,
}

impl<R> std::fmt::Debug for Entries<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entries({})", self.0.len())
    }
}

/// One page of search results. `total` is the count over all pages.
pub fn searchset<'a, R: Serialize>(
    total: u64,
    resources: &'a [R],
    links: &'a SearchsetLinks,
) -> SearchsetBundle<'a, R> {
    let relations =
        [("self", Some(&links.self_url)), ("previous", links.previous.as_ref()), ("next", links.next.as_ref())];
    SearchsetBundle {
        resource_type: "Bundle",
        kind: "searchset",
        total,
        entry: Entries(resources),
        link: relations.into_iter().filter_map(|(relation, url)| url.map(|url| Link { relation, url })).collect(),
        meta: EmptyObject {},
    }
}

/// The answer to `_summary=count`: the total, no entries, only the `self` link.
pub fn summary_count(total: u64, self_url: &str) -> SearchsetBundle<'_, ()> {
    SearchsetBundle {
        resource_type: "Bundle",
        kind: "searchset",
        total,
        entry: Entries(&[]),
        link: vec![Link { relation: "self", url: self_url }],
        meta: EmptyObject {},
    }
}

/// What happened to one entry of an uploaded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEntryResult {
    /// Stored; `id` is the new resource's id.
    Created { id: String },
    /// Refused with this HTTP status (400, 403, 409, 422, …) and message.
    Failed { status: u16, diagnostics: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedResource<'a> {
    resource_type: &'static str,
    id: &'a str,
}

#[derive(Debug, Clone, Serialize)]
struct EntryResponse {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<OperationOutcome>,
}

#[derive(Debug, Clone, Serialize)]
struct BatchEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<CreatedResource<'a>>,
    response: EntryResponse,
}

/// `{"resourceType":"Bundle","type":"batch-response","entry":[…]}`, one entry per uploaded entry, in order; the
/// reference (fhir.resources) leaves `entry` out when there are none.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponseBundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<BatchEntry<'a>>,
}

/// Success entries are `{"resource":{"resourceType":"Resource","id"},"response":{"status":"201 Created"}}`;
/// failures `{"response":{"status":"<code> <reason>","outcome":OperationOutcome}}`.
pub fn batch_response(results: &[BatchEntryResult]) -> BatchResponseBundle<'_> {
    let entry = results
        .iter()
        .map(|result| match result {
            BatchEntryResult::Created { id } => BatchEntry {
                resource: Some(CreatedResource { resource_type: "Resource", id }),
                response: EntryResponse { status: status_line(201), outcome: None },
            },
            BatchEntryResult::Failed { status, diagnostics } => BatchEntry {
                resource: None,
                response: EntryResponse {
                    status: status_line(*status),
                    outcome: Some(OperationOutcome::error(diagnostics.as_str())),
                },
            },
        })
        .collect();
    BatchResponseBundle { resource_type: "Bundle", kind: "batch-response", entry }
}

/// `"<code> <reason phrase>"` with Python 3.11's `http.HTTPStatus` phrases (the reference's runtime).
pub fn status_line(status: u16) -> String {
    const PHRASES: &[(u16, &str)] = &[
        (200, "OK"),
        (201, "Created"),
        (204, "No Content"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (408, "Request Timeout"),
        (409, "Conflict"),
        (413, "Request Entity Too Large"),
        (415, "Unsupported Media Type"),
        (422, "Unprocessable Entity"),
        (429, "Too Many Requests"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
    ];
    match PHRASES.iter().find(|(code, _)| *code == status) {
        Some((_, phrase)) => format!("{status} {phrase}"),
        None => status.to_string(),
    }
}
