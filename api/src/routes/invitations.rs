//! `/api/v1/invitation`: practitioners invite a patient to a patient app (jhe-compat §5.11, §7.4). The answer to
//! the POST is the only place the raw token and the finished link ever appear. Redeeming (`POST
//! /invitation/{token}`) belongs to the OAuth server (`oauth/invitation.rs`).
//!
//! Closing the §13.2 gap: issuing needs the member or manager role in one of the patient's organizations (or a
//! superuser), and reads are limited to invitations of patients the caller may see.

use super::clients::site_url;
use crate::AppState;
use crate::access::require_practitioner;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, ok};
use crate::paging::{fixed_page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{Caller, InvitationFilter};
use jhe_schemas::{Permission, role_allows};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, retrieve))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/invitation", get(list).post(create))
        .route("/invitation/{id}", get(retrieve).post(super::oauth::redeem_invitation))
}

/// What Python's `urllib.parse.quote` leaves alone (letters, digits, `_.-~` and `/`), so links match the
/// reference's byte for byte.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-').remove(b'~').remove(b'/');

/// `host[:port]` of a base URL, as Python's `urlparse(..).netloc` gives it (without user info).
fn netloc(site: &str) -> &str {
    let rest = site.split_once("://").map_or(site, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

/// The client's invitation URL with every `CODE` replaced by the quoted `<host>_<token>`; the app splits the
/// code on `_` to learn which server to redeem it at.
fn invitation_link(invitation_url: &str, site: &str, token: &str) -> String {
    let code = format!("{}_{token}", netloc(site));
    invitation_url.replace("CODE", &utf8_percent_encode(&code, QUOTE).to_string())
}

/// `send_email`: absent, null or a boolean.
fn send_email(body: &Body) -> ApiResult<bool> {
    match body.0.get("send_email") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(send)) => Ok(*send),
        Some(_) => Err(ApiError::bad_request("sendEmail: expected true or false")),
    }
}

/// The caller may invite a patient if they may manage patients in one of the patient's organizations (a superuser
/// any patient). A patient outside those organizations answers the same as an id that does not exist.
async fn require_may_invite(state: &AppState, caller: &Caller, patient_id: i64) -> ApiResult<()> {
    let organizations = jhe_catalog::patient_organization_ids(&state.pool, patient_id).await?;
    let allowed = |org: &i64| role_allows(caller.role_in(*org), false, Permission::PatientManageForOrganization);
    if !caller.is_superuser && !organizations.iter().any(allowed) {
        return Err(ApiError::forbidden(
            "Inviting a patient needs the member or manager role in one of the patient's organizations.",
        ));
    }
    match jhe_catalog::get_patient(&state.pool, patient_id).await {
        Ok(_) => Ok(()),
        Err(jhe_catalog::Error::NotFound { .. }) => {
            Err(ApiError::bad_request(format!("patientId: patient {patient_id} does not exist")))
        }
        Err(other) => Err(other.into()),
    }
}

#[utoipa::path(post, path = "/api/v1/invitation", tag = "invitation",
    request_body(content = serde_json::Value, description = "`{\"patient_id\" (or patientId), \"client_id\": <client row id> (or clientId), \"send_email\": false}`"),
    responses((status = 201, description = "`{id, patientId, client_id, tokenHash, token, status, lastUpdated, invitationLink}`; earlier issued invitations of the patient to the app become `reissued`"),
              (status = 400, description = "a missing or unknown patient or client, a client that is not a patient app, or send_email (no mail delivery)"),
              (status = 401, description = "no token"),
              (status = 403, description = "not a member or manager of the patient's organizations")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl, body: Body) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    // `clientId` arrives unconverted (§2.1 ignore keys); the reference reads only `client_id`, jhe reads both
    body.only(&["patient_id", "client_id", "clientId", "send_email"])?;
    let patient_id = body.required_int("patient_id", "patientId")?;
    let client_pk = match body.int("client_id")? {
        Some(client_pk) => client_pk,
        None => body.required_int("clientId", "client_id")?,
    };
    let send_email = send_email(&body)?;
    require_may_invite(&state, &caller, patient_id).await?;
    if send_email {
        return Err(ApiError::bad_request(
            "sendEmail: email delivery is not configured; send the invitationLink to the patient yourself \
             (issue the invitation with sendEmail false)",
        ));
    }
    let issued = jhe_catalog::issue_invitation(&state.pool, patient_id, client_pk).await?;
    let mut invitation = issued.invitation;
    let site = site_url(&state, &url).await?;
    invitation.invitation_link =
        invitation.token.as_deref().map(|token| invitation_link(&issued.invitation_url, &site, token));
    created(&invitation)
}

#[utoipa::path(get, path = "/api/v1/invitation", tag = "invitation",
    params(("page" = Option<u32>, Query, description = "1-based page of 1000"),
           ("patientId" = Option<i64>, Query, description = "only this patient's invitations")),
    responses((status = 200, description = "paged invitations (newest first) of the patients the caller may see; `token` and `invitationLink` are null"),
              (status = 401, description = "no token"), (status = 403, description = "neither a practitioner nor a patient")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    let mut filter = if caller.is_superuser {
        InvitationFilter::default()
    } else if let Some(practitioner_id) = caller.practitioner_id {
        InvitationFilter { visible_to_practitioner: Some(practitioner_id), ..InvitationFilter::default() }
    } else if let Some(patient_id) = caller.patient_id {
        InvitationFilter { patient_id: Some(patient_id), ..InvitationFilter::default() }
    } else {
        return Err(ApiError::permission_denied());
    };
    if let Some(patient_id) = url.int_param("patient_id")? {
        if filter.patient_id.is_some_and(|own| own != patient_id) {
            return Err(ApiError::forbidden("The Patient does not match the current patient user."));
        }
        filter.patient_id = Some(patient_id);
    }
    let page = fixed_page_request(&url)?;
    paged(&url, page, jhe_catalog::list_invitations(&state.pool, &filter, page).await?)
}

#[utoipa::path(get, path = "/api/v1/invitation/{id}", tag = "invitation",
    params(("id" = i64, Path, description = "invitation id")),
    responses((status = 200, description = "the invitation (`token` and `invitationLink` are null)"),
              (status = 403, description = "the patient is not visible to the caller"), (status = 404, description = "no such invitation")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    let invitation = jhe_catalog::get_invitation(&state.pool, id).await?;
    super::patients::require_patient_visible(&state, &caller, invitation.patient_id).await?;
    ok(&invitation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_quote_host_and_token_like_python() {
        assert_eq!(netloc("https://jhe.tcp.org"), "jhe.tcp.org");
        assert_eq!(netloc("http://user:pw@127.0.0.1:8000/base/"), "127.0.0.1:8000");
        assert_eq!(
            invitation_link("https://carex.ai/invitation/CODE", "http://127.0.0.1:8000", "abc"),
            "https://carex.ai/invitation/127.0.0.1%3A8000_abc"
        );
        assert_eq!(
            invitation_link("https://app.example?invitation=CODE", "https://jhe.tcp.org", "0wYu"),
            "https://app.example?invitation=jhe.tcp.org_0wYu"
        );
    }
}
