//! `/api/v1/clients`: patient apps (public OAuth clients with an invitation URL) and the data sources they upload
//! from, plus `GET /patients/{id}/consolidated_clients`. Practitioners read; only superusers change them
//! (`client.manage`). No answer carries a client secret or its hash.

use crate::AppState;
use crate::access::{require_practitioner, require_superuser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, link_id, no_content, ok};
use crate::paging::{fixed_page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{ClientChanges, NewClient};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    create,
    retrieve,
    update,
    destroy,
    data_sources,
    add_data_source,
    remove_data_source,
    consolidated_clients
))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/clients", get(list).post(create))
        .route("/clients/{id}", get(retrieve).patch(update).put(update).delete(destroy))
        .route("/clients/{id}/data_sources", get(data_sources).post(add_data_source).delete(remove_data_source))
        .route("/patients/{id}/consolidated_clients", get(consolidated_clients))
}

/// The site's external base URL: the `site.url` setting (so links are right behind any proxy), else the
/// request's own base.
pub(super) async fn site_url(state: &AppState, url: &RequestUrl) -> ApiResult<String> {
    let configured = jhe_catalog::setting_string(&state.pool, "site.url").await?;
    Ok(configured
        .map(|site| site.trim().trim_end_matches('/').to_owned())
        .filter(|site| !site.is_empty())
        .unwrap_or_else(|| url.base.clone()))
}

/// `clientId` arrives unconverted because `client_id` is one of the §2.1 ignore keys; both spellings are read.
const CLIENT_ID_KEYS: &[&str] = &["client_id", "clientId"];

/// Fields a client may send; `id` (read-only) is accepted and ignored so a client can send back what it read.
const CLIENT_FIELDS: &[&str] = &["id", "name", "client_id", "clientId", "invitation_url"];

/// A text field under the first of `keys` present: `None` when absent, 400 when null or blank.
pub(super) fn text_field(body: &Body, keys: &[&str], wire_name: &str) -> ApiResult<Option<String>> {
    let Some(key) = keys.iter().find(|key| body.has(key)) else {
        return Ok(None);
    };
    match body.string(key)?.flatten() {
        Some(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        _ => Err(ApiError::bad_request(format!("{wire_name}: may not be blank"))),
    }
}

/// A field that must be present, with the 400 naming it.
pub(super) fn required<T>(value: Option<T>, wire_name: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::bad_request(format!("{wire_name}: this field is required")))
}

/// OAuth client ids travel in URLs and form bodies: URL-safe characters only.
fn validate_client_id(client_id: &str) -> ApiResult<()> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if client_id.len() <= 100 && client_id.chars().all(safe) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "clientId: `{client_id}` may contain only letters, digits and `-._~` (at most 100 characters)"
        )))
    }
}

/// The invitation URL is where patients land; `CODE` in it is replaced by the invitation code.
fn validate_invitation_url(invitation_url: &str) -> ApiResult<()> {
    if url::Url::parse(invitation_url).is_err() {
        return Err(ApiError::bad_request(format!("invitationUrl: `{invitation_url}` is not an absolute URL")));
    }
    if !invitation_url.contains("CODE") {
        return Err(ApiError::bad_request(
            "invitationUrl: must contain the placeholder CODE, which each invitation replaces with its code \
             (e.g. https://app.example.org/invite?code=CODE)",
        ));
    }
    Ok(())
}

/// The client fields present in a body, validated.
struct ClientFields {
    name: Option<String>,
    client_id: Option<String>,
    invitation_url: Option<String>,
}

impl ClientFields {
    fn read(body: &Body) -> ApiResult<Self> {
        body.only(CLIENT_FIELDS)?;
        let fields = ClientFields {
            name: text_field(body, &["name"], "name")?,
            client_id: text_field(body, CLIENT_ID_KEYS, "clientId")?,
            invitation_url: text_field(body, &["invitation_url"], "invitationUrl")?,
        };
        if let Some(client_id) = &fields.client_id {
            validate_client_id(client_id)?;
        }
        if let Some(invitation_url) = &fields.invitation_url {
            validate_invitation_url(invitation_url)?;
        }
        Ok(fields)
    }
}

#[utoipa::path(get, path = "/api/v1/clients", tag = "clients",
    params(("page" = Option<u32>, Query, description = "1-based page of 1000")),
    responses((status = 200, description = "paged patient apps `{id, name, clientId, invitationUrl}`, newest first"),
              (status = 401, description = "no token"), (status = 403, description = "not a practitioner")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = fixed_page_request(&url)?;
    paged(&url, page, jhe_catalog::list_clients(&state.pool, page).await?)
}

#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    responses((status = 200, description = "the patient app"), (status = 403, description = "not a practitioner"),
              (status = 404, description = "no such patient app")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    ok(&jhe_catalog::get_client(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/clients", tag = "clients",
    request_body(content = serde_json::Value, description = "`{\"name\", \"clientId\", \"invitationUrl\"}`, all required; the URL must contain CODE"),
    responses((status = 201, description = "the new patient app (public authorization-code client, redirect `<site>/auth/callback`)"),
              (status = 400, description = "a missing field or an invitation URL without CODE"),
              (status = 403, description = "not a superuser"), (status = 409, description = "the clientId is taken")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let fields = ClientFields::read(&body)?;
    let name = required(fields.name, "name")?;
    let client_id = required(fields.client_id, "clientId")?;
    let invitation_url = required(fields.invitation_url, "invitationUrl")?;
    let redirect_uri = format!("{}/auth/callback", site_url(&state, &url).await?);
    let new =
        NewClient { name: &name, client_id: &client_id, invitation_url: &invitation_url, redirect_uri: &redirect_uri };
    created(&jhe_catalog::create_client(&state.pool, &new).await?)
}

#[utoipa::path(method(patch, put), path = "/api/v1/clients/{id}", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    request_body(content = serde_json::Value, description = "`{\"name\"?, \"clientId\"?, \"invitationUrl\"?}`"),
    responses((status = 200, description = "the changed patient app"), (status = 400, description = "a blank field or an invitation URL without CODE"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such patient app"),
              (status = 409, description = "the clientId is taken")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let fields = ClientFields::read(&body)?;
    let changes = ClientChanges {
        name: fields.name.as_deref(),
        client_id: fields.client_id.as_deref(),
        invitation_url: fields.invitation_url.as_deref(),
    };
    ok(&jhe_catalog::update_client(&state.pool, id, &changes).await?)
}

#[utoipa::path(delete, path = "/api/v1/clients/{id}", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    responses((status = 204, description = "deleted with its study and data source links, invitations and tokens"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such patient app")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    jhe_catalog::delete_client(&state.pool, id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/clients/{id}/data_sources", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    responses((status = 200, description = "array of DataSource the app uploads from, by name"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such patient app")))]
async fn data_sources(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    ok(&jhe_catalog::client_data_sources(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/clients/{id}/data_sources", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    request_body(content = serde_json::Value, description = "`{\"dataSourceId\"}`"),
    responses((status = 201, description = "`{id, client_id, dataSourceId}`"), (status = 400, description = "missing or unknown dataSourceId"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such patient app"),
              (status = 409, description = "already linked")))]
async fn add_data_source(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
    body: Body,
) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let data_source = link_id(&body, Some(&url), &["data_source_id"], "dataSourceId")?;
    created(&jhe_catalog::add_client_data_source(&state.pool, id, data_source).await?)
}

#[utoipa::path(delete, path = "/api/v1/clients/{id}/data_sources", tag = "clients",
    params(("id" = i64, Path, description = "client row id")),
    request_body(content = serde_json::Value, description = "`{\"dataSourceId\"}` (or `?dataSourceId=`)"),
    responses((status = 204, description = "unlinked"), (status = 400, description = "missing dataSourceId"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such patient app or link")))]
async fn remove_data_source(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
    body: Body,
) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let data_source = link_id(&body, Some(&url), &["data_source_id"], "dataSourceId")?;
    jhe_catalog::remove_client_data_source(&state.pool, id, data_source).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/patients/{id}/consolidated_clients", tag = "clients",
    params(("id" = i64, Path, description = "patient id")),
    responses((status = 200, description = "the patient apps of the patient's studies, each with `patientInvitations` (newest first)"),
              (status = 403, description = "another patient, or a practitioner outside the patient's organizations"),
              (status = 404, description = "no such patient")))]
async fn consolidated_clients(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    super::patients::require_patient_visible(&state, &caller, id).await?;
    jhe_catalog::get_patient(&state.pool, id).await?;
    ok(&jhe_catalog::consolidated_clients(&state.pool, id).await?)
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;
    use utoipa::openapi::OpenApi as Document;

    /// [get, post, put, patch, delete] as documented for `path`.
    fn methods(doc: &Document, path: &str) -> [bool; 5] {
        let item = doc.paths.paths.get(path).unwrap_or_else(|| panic!("{path} is not documented"));
        [item.get.is_some(), item.post.is_some(), item.put.is_some(), item.patch.is_some(), item.delete.is_some()]
    }

    /// Every route and method of the data source, client, API key, settings and invitation modules is documented.
    #[test]
    fn api_docs_list_every_route_and_method() {
        const READ_WRITE: [bool; 5] = [true, false, true, true, true];
        const LIST_CREATE: [bool; 5] = [true, true, false, false, false];
        const LINKS: [bool; 5] = [true, true, false, false, true];
        let clients = super::ApiDoc::openapi();
        assert_eq!(methods(&clients, "/api/v1/clients"), LIST_CREATE);
        assert_eq!(methods(&clients, "/api/v1/clients/{id}"), READ_WRITE);
        assert_eq!(methods(&clients, "/api/v1/clients/{id}/data_sources"), LINKS);
        assert_eq!(methods(&clients, "/api/v1/patients/{id}/consolidated_clients"), [true, false, false, false, false]);
        let data_sources = super::super::data_sources::ApiDoc::openapi();
        assert_eq!(methods(&data_sources, "/api/v1/data_sources"), LIST_CREATE);
        assert_eq!(methods(&data_sources, "/api/v1/data_sources/all_scopes"), [true, false, false, false, false]);
        assert_eq!(methods(&data_sources, "/api/v1/data_sources/{id}"), READ_WRITE);
        assert_eq!(methods(&data_sources, "/api/v1/data_sources/{id}/supported_scopes"), LINKS);
        let keys = super::super::practitioner_clients::ApiDoc::openapi();
        assert_eq!(methods(&keys, "/api/v1/practitioner_clients"), LIST_CREATE);
        assert_eq!(methods(&keys, "/api/v1/practitioner_clients/{id}"), [true, false, false, true, true]);
        let settings = super::super::settings::ApiDoc::openapi();
        assert_eq!(methods(&settings, "/api/v1/jhe_settings"), LIST_CREATE);
        assert_eq!(methods(&settings, "/api/v1/jhe_settings/{id}"), READ_WRITE);
        let invitations = super::super::invitations::ApiDoc::openapi();
        assert_eq!(methods(&invitations, "/api/v1/invitation"), LIST_CREATE);
        assert_eq!(methods(&invitations, "/api/v1/invitation/{id}"), [true, false, false, false, false]);
    }
}
